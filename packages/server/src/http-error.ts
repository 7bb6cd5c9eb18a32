// Errors the HTTP layer answers with a status that says what was wrong, as JSON in the OpenAI
// API's shape ({"error": {"message", "type", "param"}}), so OpenAI clients report them as usual.
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The request field at fault, when one is. */
    readonly param?: string,
    /** Extra headers, e.g. Retry-After. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The OpenAI error type of a status. */
export function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}
