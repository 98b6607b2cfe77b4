// The REST API as the workspace uses it: the session cookie authenticates, the CSRF token
// goes in a header (DRF's SessionAuthentication), and every failure becomes an ApiError
// whose message is a sentence for a person (the API's {"code", "message"} shape).

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

export class ApiError extends Error {
  constructor(message, { status = 0, code = "error", body = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const UNREACHABLE = "The server could not be reached. Check your connection and try again.";

function errorFrom(status, statusText, body) {
  if (body && typeof body.message === "string" && body.message) {
    return new ApiError(body.message, { status, code: body.code || "error", body });
  }
  if (status === 401 || status === 403) {
    return new ApiError("Your session has ended. Sign in again to continue.", { status });
  }
  if (status === 413) {
    return new ApiError("The file is larger than the server accepts.", { status });
  }
  const text = statusText ? ` (${status} ${statusText})` : ` (${status})`;
  return new ApiError(`The server could not do that${text}. Try again later.`, { status });
}

async function parseJson(response) {
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// fetch() a path of the API (or an absolute URL the API gave, such as a page's `next`).
export async function api(path, { method = "GET", json } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  } catch {
    throw new ApiError(UNREACHABLE);
  }
  const data = response.status === 204 ? null : await parseJson(response);
  if (!response.ok) throw errorFrom(response.status, response.statusText, data);
  return data;
}

// Every page of a paginated list.
export async function apiList(path) {
  const results = [];
  let next = path;
  while (next) {
    const page = await api(next);
    results.push(...page.results);
    next = page.next;
  }
  return results;
}

// A multipart POST through XMLHttpRequest, whose upload events report progress (fetch's
// do not). onProgress receives the fraction sent, 0..1.
export function uploadForm(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(errorFrom(xhr.status, xhr.statusText, data));
    });
    xhr.addEventListener("error", () => reject(new ApiError(UNREACHABLE)));
    xhr.addEventListener("abort", () => reject(new ApiError("The upload was stopped.")));
    xhr.send(formData);
  });
}
