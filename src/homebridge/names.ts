/**
 * HomeKit's naming rule (HAP-NodeJS checks it and the Home app enforces it): a name starts
 * and ends with a letter or digit, and holds only letters, digits, spaces, apostrophes and
 * common punctuation in between. "+" and emoji, for example, are not allowed.
 */
const ALLOWED_INSIDE = /[^\p{L}\p{N}\p{Zs}\u2019'&!._:;(),-]/gu;
const EDGE = /^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu;

/** A HomeKit-safe version of `name`, or `fallback` when nothing usable is left. */
export function homeKitName(name: string, fallback: string): string {
  const cleaned = name.replace(ALLOWED_INSIDE, ' ').replace(/\s+/gu, ' ').replace(EDGE, '').slice(0, 64).replace(EDGE, '');
  return cleaned.length > 0 ? cleaned : fallback;
}
