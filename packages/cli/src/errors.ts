// The CLI's usage error is the one its plugins throw too (@ditcache/diffusion/cli), so that a
// family's complaint about the flags or inputs is printed as one line with exit status 2.
export { UsageError } from '@ditcache/diffusion/cli';
