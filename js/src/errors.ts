// TokenError and the status names it carries: what a failed token request tells the app.

/**
 * The google.rpc status names of the broker's HTTP statuses, used for `TokenError.code` when
 * an answer has no `error.status` of its own (a proxy's HTML page, say). The broker's table
 * (gemini_tokens/broker/_http.py, docs/broker.md) plus the statuses a proxy in front of it may
 * answer (502, 504); keep the two in step.
 */
export const STATUS_NAMES: Readonly<Record<number, string>> = Object.freeze({
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  405: "UNIMPLEMENTED",
  408: "DEADLINE_EXCEEDED",
  409: "ABORTED",
  413: "INVALID_ARGUMENT",
  415: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  499: "CANCELLED",
  500: "INTERNAL",
  501: "UNIMPLEMENTED",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
});

/** What a `TokenError` is built from; every field is optional. */
export interface TokenErrorInfo {
  /** HTTP status of the broker's answer; 0 (the default) when it could not be reached. */
  status?: number;
  /** google.rpc status name, e.g. "PERMISSION_DENIED". */
  code?: string;
  /** True when trying again later may succeed. */
  retryable?: boolean;
  /** The broker's last Retry-After, in milliseconds. */
  retryAfterMs?: number | undefined;
}

/** A token request that failed: `status` is the broker's HTTP status (0: unreachable). */
export class TokenError extends Error {
  /** HTTP status of the broker's answer; 0 when it could not be reached. */
  readonly status: number;
  /** google.rpc status name, e.g. "PERMISSION_DENIED" or "UNAVAILABLE" ("" when unknown). */
  readonly code: string;
  /** True when trying again later may succeed (the retries ran out); false when final. */
  readonly retryable: boolean;
  /** The broker's last Retry-After, in milliseconds, when it sent one. */
  readonly retryAfterMs: number | undefined;

  /**
   * @param message What the app can show the user.
   * @param info The status, code and retry facts of the failure.
   */
  constructor(message: string, info: TokenErrorInfo = {}) {
    super(message);
    this.name = "TokenError";
    this.status = info.status ?? 0;
    this.code = info.code ?? "";
    this.retryable = info.retryable ?? false;
    this.retryAfterMs = info.retryAfterMs;
  }
}

/**
 * Milliseconds to wait from a Retry-After header: delta-seconds, or an HTTP date judged
 * against the answer's own Date header (the server's clock) when it has one.
 *
 * @param value The Retry-After header, or null.
 * @param dateHeader The answer's Date header, or null.
 * @param localNow The local clock, in epoch milliseconds (used without a Date header).
 * @returns The delay in milliseconds, or undefined when there is no usable header.
 */
export function parseRetryAfter(
  value: string | null | undefined,
  dateHeader: string | null | undefined,
  localNow: number,
): number | undefined {
  if (value == null || value.trim() === "") return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  if (Number.isNaN(when)) return undefined;
  const serverNow = dateHeader ? Date.parse(dateHeader) : Number.NaN;
  return Math.max(0, when - (Number.isNaN(serverNow) ? localNow : serverNow));
}
