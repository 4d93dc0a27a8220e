// Every call to Strata's API carries a token: given once in the page's address
// (?token=…, taken out of it at once) or pasted when asked, and kept in this
// browser's storage. `strata demo` prints an address with the admin token.
const KEY = "strata-token";

const given = new URLSearchParams(location.search).get("token");
if (given) {
  localStorage.setItem(KEY, given);
  history.replaceState(null, "", location.pathname + location.hash);
}

export const token = () => localStorage.getItem(KEY) || "";

export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${token()}` };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) askForToken();
  return response;
}

function askForToken() {
  if (document.getElementById("token-form")) return;
  const form = document.createElement("form");
  form.id = "token-form";
  form.style.cssText = "position:fixed;top:56px;left:50%;transform:translateX(-50%);background:#fff;border:1px solid #9aa5b8;border-radius:6px;padding:12px 16px;box-shadow:0 4px 16px #0003;z-index:10";
  form.innerHTML = `<label>This page needs a Strata token (strata demo prints one; <code>strata token create</code> makes more)<br>
    <input id="token-input" type="password" size="48" autocomplete="off" style="margin-top:6px"></label>
    <button type="submit">Use it</button>`;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, document.getElementById("token-input").value.trim());
    location.reload();
  });
  document.body.append(form);
}
