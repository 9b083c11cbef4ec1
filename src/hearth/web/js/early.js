// The page's first script: a classic one, run as soon as the parser meets it, before the modules
// have loaded (they are fetched meanwhile). It applies the theme the user chose (no flash of the
// other one) and starts the two requests the first view needs, so their answers are on their way
// while the modules load and compile. api.js takes them over, once.
{
  const key = localStorage.getItem("hearth.apiKey");
  const theme = localStorage.getItem("hearth.theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  globalThis.hearthEarly = new Map(
    ["/v1/models", "/v1/threads?limit=100"].map((path) => [
      path,
      fetch(path, { headers }).catch(() => null), // a failure: api.js asks again itself
    ]),
  );
}
