/** The page's side of the REST API: JSON in and out, errors as readable messages, 401 → login. */

export interface ApiErrorBody {
  error: { code: string; message: string; issues?: { path: string; message: string }[] };
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type LoginHandler = () => Promise<void>;
let askLogin: LoginHandler | undefined;
let loginPending: Promise<void> | undefined;

/** Set by the app: shows the token form and resolves once the hub accepted a token. */
export function onLoginNeeded(handler: LoginHandler): void {
  askLogin = handler;
}

/** Asks for a token once, however many requests were refused at the same time. */
export function needLogin(): Promise<void> {
  if (!askLogin) return Promise.reject(new ApiFailure(401, 'unauthorized', 'the hub asks for an access token'));
  loginPending ??= askLogin().finally(() => (loginPending = undefined));
  return loginPending;
}

async function failure(res: Response): Promise<ApiFailure> {
  let body: ApiErrorBody | undefined;
  try {
    body = (await res.json()) as ApiErrorBody;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  return new ApiFailure(res.status, body?.error?.code ?? String(res.status), body?.error?.message ?? `${res.status} ${res.statusText}`);
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`api${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    if (res.status === 401 && attempt === 0) {
      await needLogin();
      continue;
    }
    if (!res.ok) throw await failure(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }
}

/** POST /api/login with the token; the hub answers with a session cookie. */
export async function login(token: string): Promise<void> {
  const res = await fetch('api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }), credentials: 'same-origin' });
  if (!res.ok) throw await failure(res);
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

/** Uploads one file with progress (fetch cannot report upload progress; XHR can). */
export function uploadFile(file: File, onProgress: (p: UploadProgress) => void): Promise<{ files: { uploadId: number; name: string; path: string }[] }> {
  return new Promise((resolve, reject) => {
    const send = (retried: boolean) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', 'api/library/uploads');
      xhr.upload.onprogress = (e) => onProgress({ loaded: e.loaded, total: e.lengthComputable ? e.total : file.size });
      xhr.onerror = () => reject(new ApiFailure(0, 'network', 'the upload was interrupted (network error or the hub went away)'));
      xhr.onload = () => {
        let body: unknown;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = undefined;
        }
        if (xhr.status === 401 && !retried) {
          needLogin().then(() => send(true), reject);
          return;
        }
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body as { files: { uploadId: number; name: string; path: string }[] });
        const err = (body as ApiErrorBody | undefined)?.error;
        reject(new ApiFailure(xhr.status, err?.code ?? String(xhr.status), err?.message ?? `upload failed (${xhr.status})`));
      };
      const form = new FormData();
      form.append('file', file, file.name);
      xhr.send(form);
    };
    send(false);
  });
}
