/** Text helpers shared by the report's sections. */

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export const displayLabel = (label: string) => (label === '' ? '(no label)' : label);
export const percent = (value: number, digits = 2) => `${(value * 100).toFixed(digits)}%`;
export const integer = (value: number) => value.toLocaleString('en-US');
