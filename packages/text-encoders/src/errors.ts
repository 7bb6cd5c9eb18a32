/** A tokenizer folder or file that cannot be read, or describes something this package does not implement. */
export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}
