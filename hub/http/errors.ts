import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import type { ErrorCode } from '../../src/protocol/schemas.js';
import { CommandError } from '../control/commands.js';

/** The error body of every REST response that is not a success: `{error: {code, message, issues?}}`. */
export interface ApiErrorBody {
  error: { code: ApiErrorCode; message: string; issues?: { path: string; message: string }[] };
}

/** The command error codes, plus what only HTTP can go wrong with. */
export type ApiErrorCode = ErrorCode | 'unsupported-type' | 'unauthorized' | 'not-acceptable' | 'too-many-requests';

const STATUS: Record<ApiErrorCode, number> = {
  'too-large': 413,
  'bad-utf8': 400,
  'bad-json': 400,
  invalid: 400,
  'unknown-command': 404,
  'unknown-topic': 404,
  'not-found': 404,
  conflict: 409,
  internal: 500,
  'unsupported-type': 415,
  unauthorized: 401,
  'not-acceptable': 406,
  'too-many-requests': 429,
};

/** A request refused for a reason the client can fix; the status follows from the code. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly issues?: { path: string; message: string }[],
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get status(): number {
    return STATUS[this.code];
  }

  body(): ApiErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.issues ? { issues: this.issues } : {}) } };
  }
}

/** Maps fastify's own errors (bad JSON, body too large, schema) to the API's codes. */
function fromFastify(err: FastifyError): ApiError {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = err.validationContext ?? 'request';
    const issues = err.validation.slice(0, 10).map((v) => ({
      path: [where, ...String(v.instancePath ?? '').split('/').filter(Boolean)].join('.'),
      message: v.message ?? 'invalid',
    }));
    return new ApiError('invalid', issues.map((i) => `${i.path}: ${i.message}`).join('; '), issues);
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new ApiError('too-large', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new ApiError('unsupported-type', err.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('bad-json', err.message);
  }
  if (err instanceof SyntaxError) return new ApiError('bad-json', `body is not JSON: ${err.message}`);
  if (err.statusCode === 404) return new ApiError('not-found', err.message);
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return new ApiError('invalid', err.message);
  return new ApiError('internal', `the hub failed to answer: ${err.message}`);
}

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof CommandError) return new ApiError(err.code, err.message);
  return fromFastify(err as FastifyError);
}

/** Unknown paths (the API's and the static files') answer with the JSON error body too. */
export function installNotFoundHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError('not-found', `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}`);
    void reply.status(404).send(e.body());
  });
}

/** Every error under /api answers with the JSON body above, never an HTML page or a stack. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500) request.log.error({ err, url: request.url }, 'REST request failed');
    else request.log.debug({ url: request.url, code: apiError.code, message: apiError.message }, 'REST request refused');
    void reply.status(apiError.status).type('application/json').send(apiError.body());
  });
}
