// Chroma on the ditcache runtime: its transformer, pipeline and cache adapter (being ported).
export {};
