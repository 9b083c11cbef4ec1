#!/usr/bin/env bash
# Build the page's JavaScript into src/hearth/web/bundle/ (development time only).
#
# The page's own modules (src/hearth/web/js/) and the vendored files they import are bundled by
# esbuild (pinned in package.json) into a few minified files: the first view's code in one
# request instead of a dozen, which shortens a cold load. Dynamic imports stay separate chunks
# (Markdown, highlight.js, the Models view). Chunk names carry a hash of their content, so the
# server lets browsers cache them for a year. Installing or running Hearth needs no Node: the
# output is committed, with SOURCES.sha256 (the digest of every input) and FILES.sha256 (every
# output file); a test recomputes both and fails when a source changed without a rebuild or a
# built file is missing, extra or edited. Run after editing anything under js/:
#     cd web-dev && ./build.sh
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/esbuild ] || npm ci --no-audit --no-fund --ignore-scripts
web=../src/hearth/web
out="$web/bundle"
rm -rf "$out" && mkdir -p "$out"
node_modules/.bin/esbuild "$web/js/main.js" --bundle --splitting --format=esm --minify \
  --target=es2022 --legal-comments=eof --charset=utf8 --log-level=warning \
  --banner:js="/*! Hearth's web page: src/hearth/web/js bundled with marked (MIT), DOMPurify \
(Apache-2.0 or MPL-2.0) and highlight.js (BSD-3-Clause); their licenses are in vendor/. */" \
  --outdir="$out" --entry-names='[name]' --chunk-names='[name]-[hash]'
# early.js is a classic script of its own, run before the modules: copied as it is
cp "$web/js/early.js" "$out/early.js"
# what the test recomputes: the digest of every input ("<sha256>  <path from the repository
# root>" per file, sorted by path, hashed), and every output file with its own sha256
(cd .. && sha256sum src/hearth/web/js/*.js src/hearth/web/vendor/*.js web-dev/build.sh \
  web-dev/package-lock.json | LC_ALL=C sort -k2 | sha256sum | cut -d' ' -f1) > "$out/SOURCES.sha256"
(cd "$out" && sha256sum -- *.js | LC_ALL=C sort -k2) > "$out/FILES.sha256"
ls -l "$out"
