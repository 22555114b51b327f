// The path of a request URL, shared by the routes, the error answers and the dashboard.

/** The URL path without its query string. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
