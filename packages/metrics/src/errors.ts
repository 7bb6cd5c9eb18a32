/**
 * The one error type this package throws for bad input: a missing partner file, a size
 * mismatch, an unreadable or unsupported file, an empty directory, an unknown metric, a
 * missing model file. The message is a single line that names the files involved, so the
 * CLI can print it as is and exit non-zero.
 */
export class MetricsError extends Error {
  override readonly name = 'MetricsError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
