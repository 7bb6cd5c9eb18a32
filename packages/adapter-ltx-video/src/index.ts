// LTX-Video on the ditcache runtime: its transformer, pipeline, VAE and cache adapter (being ported).
export {};
