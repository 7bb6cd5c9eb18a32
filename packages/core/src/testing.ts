// @ditcache/core/testing: helpers for tests of the engine and of adapters, kept out of the main entry point.
// PlainTensorOps is @injectable, and tsyringe's decorators need the metadata polyfill loaded first.
import 'reflect-metadata';

export { PlainTensor, PlainTensorOps, type PlainData } from './plain-tensor.js';
