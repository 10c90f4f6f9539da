import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/**
 * The file a client-supplied name refers to inside `root`, or an error saying why the
 * name is refused. Every API that takes a name and touches the disk goes through this:
 * absolute names, `..` segments, NUL bytes, backslashes and percent-escapes that survived
 * decoding are refused outright, and the result must still be inside `root` once
 * resolved (and, with `followLinks`, once symbolic links are followed).
 */
export function childPath(root: string, name: string, options: { followLinks?: boolean } = {}): { ok: true; path: string } | { ok: false; message: string } {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) return { ok: false, message: 'a name of 1 to 1024 characters is required' };
  if (/[\u0000-\u001f\\]/.test(name)) return { ok: false, message: 'control characters and backslashes are not allowed in a name' };
  if (/%[0-9a-f]{2}/i.test(name)) return { ok: false, message: 'percent-escapes are not allowed in a name (decode once, at the edge)' };
  if (isAbsolute(name)) return { ok: false, message: 'absolute paths are not allowed' };
  if (name.split('/').some((s) => s === '..' || s === '.')) return { ok: false, message: '"." and ".." are not allowed in a name' };
  const base = resolve(root);
  const path = resolve(base, name);
  const inside = (p: string, r: string) => {
    const rel = relative(r, p);
    return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
  };
  if (!inside(path, base)) return { ok: false, message: 'the name leads outside its folder' };
  if (options.followLinks) {
    try {
      if (!inside(realpathSync(path), realpathSync(base))) return { ok: false, message: 'the name leads outside its folder (through a link)' };
    } catch {
      return { ok: false, message: 'no such file' };
    }
  }
  return { ok: true, path };
}
