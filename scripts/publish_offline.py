"""Make the site written by ``asv publish`` work with no internet access.

``asv publish`` writes pages that load jQuery, flot (and its plugins), stupidtable, blueimp-md5
and Bootstrap from public CDNs (code.jquery.com, cdnjs.cloudflare.com, cdn.jsdelivr.net). Our
design requires the benchmark site to work offline, and the machines that build it reach package
registries but no CDN. This script runs after ``asv publish`` and, for every external
``<script src>`` and ``<link href>`` (stylesheets, icons, preloads) in the HTML files under the
html dir:

1. maps the CDN URL to the same library and version on the npm registry;
2. fetches that package with ``npm pack`` into ``.asv/vendor-cache/`` (once: later runs need no
   network at all);
3. copies the matching file out of the package into ``<html_dir>/vendor/<name>-<version>/``,
   keeping the package's layout, so that a stylesheet's relative ``url(...)`` assets (Bootstrap's
   glyphicon fonts) are copied next to it and still resolve;
4. rewrites the reference to a relative path. When the vendored file hashes to the CDN's
   ``integrity`` value the attribute is kept, so the browser itself proves the file is the very
   one the CDN serves; when it differs (the npm package ships only an unminified build, or a
   listed substitute version) the attribute is dropped and a warning says so.

If any reference cannot be localised the HTML is left untouched, each failing reference is named
and the exit status is 1: the script never leaves a page half rewritten, nor reports success
while an http(s) script or stylesheet remains.

Usage::

    .venv/bin/asv publish
    .venv/bin/python scripts/publish_offline.py [--html-dir .asv/html] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

logger = logging.getLogger("publish_offline")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTML_DIR = REPO_ROOT / ".asv" / "html"
DEFAULT_CACHE_DIR = REPO_ROOT / ".asv" / "vendor-cache"
VENDOR_DIRNAME = "vendor"

#: cdnjs library names that are published on npm under another name.
CDNJS_TO_NPM: dict[str, str] = {
    "stupidtable": "stupid-table-plugin",
}

#: (npm name, CDN version) -> version to use instead, for versions never published on npm.
#: Each entry is a deliberate, reviewed decision; it is reported as a warning on every run and
#: refused with ``--no-substitutes``.
#: - stupidtable 1.0.1 exists on cdnjs (built from the GitHub tag) but the only release on npm is
#:   1.1.3, a backwards-compatible minor update of the same file; asv only calls
#:   ``$(table).stupidtable()`` / ``.stupidtable(sortFns)`` with ``data-sort`` headers.
VERSION_SUBSTITUTES: dict[tuple[str, str], str] = {
    ("stupid-table-plugin", "1.0.1"): "1.1.3",
}

#: ``<link rel=...>`` values whose href the page loads as a resource (as opposed to a hyperlink).
RESOURCE_LINK_RELS = frozenset(
    {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "modulepreload", "manifest"}
)

#: Package folders never chosen when a file is looked up by its name alone.
UNLIKELY_DIRS = frozenset(
    {"test", "tests", "example", "examples", "doc", "docs", "demo", "node_modules", "src"}
)

TAG_RE = re.compile(r"<(script|link)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>", re.IGNORECASE)
ATTR_RE = re.compile(
    r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""", re.IGNORECASE
)
CSS_URL_RE = re.compile(
    r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)|@import\s+(?:"([^"]*)"|'([^']*)')"""
)


class LocaliseError(Exception):
    """A reference that cannot be served from the local site."""


@dataclass(frozen=True)
class NpmFile:
    """A file inside an npm package, named by the CDN URL it replaces."""

    name: str
    version: str
    path: str  # the path the CDN serves, relative to the package root (a best guess for cdnjs)
    exact_path: bool  # False when the CDN's layout may differ from the package's (cdnjs)


@dataclass
class Localised:
    """Where a CDN URL now lives, and whether it is byte-identical to the CDN's copy."""

    rel_to_html_dir: str  # posix path, relative to the html dir
    integrity_ok: bool | None  # None: the CDN gave no integrity value to compare with
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- URL -> npm mapping


def _split_name_version(spec: str) -> tuple[str, str, str] | None:
    """Split ``name@ver/path`` or ``@scope/name@ver/path`` (jsdelivr / unpkg style)."""
    m = re.fullmatch(r"((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)", spec)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def npm_file_for_url(url: str) -> NpmFile:
    """Map a CDN URL to the npm package, version and file path it serves."""
    parts = urlsplit(url if "://" in url else "https:" + url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path).lstrip("/")

    if host == "cdn.jsdelivr.net" and path.startswith("npm/"):
        found = _split_name_version(path[len("npm/") :])
        if found:
            return NpmFile(*found, exact_path=True)
    elif host == "unpkg.com":
        found = _split_name_version(path)
        if found:
            return NpmFile(*found, exact_path=True)
    elif host == "cdnjs.cloudflare.com" and path.startswith("ajax/libs/"):
        m = re.fullmatch(r"ajax/libs/([^/]+)/([^/]+)/(.+)", path)
        if m:
            lib, version, file_path = m.groups()
            return NpmFile(CDNJS_TO_NPM.get(lib, lib), version, file_path, exact_path=False)
    elif host == "code.jquery.com":
        m = re.fullmatch(r"jquery-(\d+\.\d+\.\d+)((?:\.slim)?(?:\.min)?\.js)", path)
        if m:
            return NpmFile("jquery", m.group(1), f"dist/jquery{m.group(2)}", exact_path=True)
    elif host in {"stackpath.bootstrapcdn.com", "maxcdn.bootstrapcdn.com"}:
        m = re.fullmatch(r"bootstrap/([^/]+)/(.+)", path)
        if m:
            return NpmFile("bootstrap", m.group(1), f"dist/{m.group(2)}", exact_path=False)
    raise LocaliseError(f"no rule maps this CDN URL to an npm package: {url}")


# --------------------------------------------------------------------------- npm package cache


def _cache_file(cache_dir: Path, name: str, version: str) -> Path:
    safe = name.lstrip("@").replace("/", "__")
    return cache_dir / f"{safe}-{version}.tgz"


def fetch_package(cache_dir: Path, name: str, version: str) -> Path:
    """Return the cached tarball of ``name@version``, running ``npm pack`` if it is missing."""
    cached = _cache_file(cache_dir, name, version)
    if cached.is_file():
        logger.debug("cache hit: %s", cached)
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise LocaliseError(
            f"{name}@{version} is not in {cache_dir} and npm is not on PATH to fetch it"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("fetching %s@%s from the npm registry", name, version)
    with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
        proc = subprocess.run(
            [npm, "pack", f"{name}@{version}", "--json", "--ignore-scripts"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if "npm error" in ln][:3]
            detail = "; ".join(errors) or proc.stderr.strip()[-300:]
            raise LocaliseError(f"npm pack {name}@{version} failed: {detail}")
        try:
            filename = json.loads(proc.stdout)[0]["filename"]
        except (ValueError, LookupError, TypeError) as exc:
            raise LocaliseError(f"npm pack {name}@{version}: unexpected output ({exc})") from exc
        # npm names scoped tarballs "scope-name-1.0.0.tgz"; the cache uses its own name.
        produced = Path(tmp) / filename.lstrip("@").replace("/", "-")
        partial = cached.with_suffix(".tgz.partial")
        shutil.copyfile(produced, partial)
        os.replace(partial, cached)
    return cached


class Package:
    """The regular files of one npm tarball, keyed by their path inside the package."""

    def __init__(self, tarball: Path) -> None:
        self.tarball = tarball
        self._files: dict[str, bytes] = {}
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                # npm tarballs put everything under one top folder, usually "package/".
                rest = member.name.lstrip("./").partition("/")[2]
                rel = posixpath.normpath(rest) if rest else ""
                if not rel or rel.startswith("../") or rel == ".." or rel.startswith("/"):
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    self._files[rel] = fh.read()

    def __contains__(self, path: str) -> bool:
        return path in self._files

    def read(self, path: str) -> bytes:
        return self._files[path]

    def paths(self) -> list[str]:
        return sorted(self._files)


# --------------------------------------------------------------------------- choosing the file


def _sri_matches(data: bytes, integrity: str) -> bool:
    """True when ``data`` matches one of the hashes of an ``integrity`` attribute value."""
    for token in integrity.split():
        algo, _, expected = token.partition("-")
        expected = expected.split("?")[0]
        if algo in {"sha256", "sha384", "sha512"}:
            digest = base64.b64encode(hashlib.new(algo, data).digest()).decode()
            if digest == expected:
                return True
    return False


def _unminified(path: str) -> str | None:
    m = re.fullmatch(r"(.*)\.min\.(js|css)", path)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _by_name(pkg: Package, wanted: str) -> list[str]:
    """Files named like ``wanted``: first those whose path ends with it, then by basename."""
    base = posixpath.basename(wanted)
    suffix = [p for p in pkg.paths() if p.endswith("/" + wanted)]
    named = [p for p in pkg.paths() if posixpath.basename(p) == base and p not in suffix]

    def rank(p: str) -> tuple[int, int, str]:
        unlikely = any(part in UNLIKELY_DIRS for part in PurePosixPath(p).parts[:-1])
        return (int(unlikely), p.count("/"), p)

    return sorted(suffix, key=rank) + sorted(named, key=rank)


def choose_file(pkg: Package, ref: NpmFile, integrity: str | None) -> tuple[str, list[str]]:
    """Pick the package file that stands for ``ref``; returns it and notes for the log."""
    wanted = [ref.path]
    unmin = _unminified(ref.path)
    if unmin:
        wanted.append(unmin)

    candidates: list[str] = []
    for w in wanted:
        if w in pkg:
            candidates.append(w)
        if not ref.exact_path or w not in pkg:
            candidates += [p for p in _by_name(pkg, w) if p not in candidates]
    if not candidates:
        raise LocaliseError(
            f"{ref.name}@{ref.version} has no file matching {ref.path!r}"
            + (f" or {unmin!r}" if unmin else "")
        )
    notes: list[str] = []
    # A candidate that hashes to the CDN's integrity value is the CDN's file: prefer it.
    if integrity:
        for cand in candidates:
            if _sri_matches(pkg.read(cand), integrity):
                return cand, notes
    chosen = candidates[0]
    if unmin and posixpath.basename(chosen) == posixpath.basename(unmin):
        notes.append(f"npm package has no minified build; using {chosen}")
    elif chosen != ref.path:
        notes.append(f"using {chosen}")
    return chosen, notes


# --------------------------------------------------------------------------- copying into vendor/


def _css_refs(text: str) -> list[str]:
    refs = []
    for m in CSS_URL_RE.finditer(text):
        ref = next((g for g in m.groups() if g is not None), "").strip()
        if ref:
            refs.append(ref)
    return refs


def _is_external(ref: str) -> bool:
    return bool(re.match(r"(?i)(?:[a-z][a-z0-9+.-]*:)?//", ref))


def copy_with_assets(pkg: Package, path: str, dest_root: Path, seen: set[str]) -> None:
    """Copy ``path`` from the package under ``dest_root``, plus what a stylesheet refers to."""
    if path in seen:
        return
    seen.add(path)
    data = pkg.read(path)
    target = dest_root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if not path.endswith(".css"):
        return
    for ref in _css_refs(data.decode("utf-8", errors="replace")):
        if ref.startswith(("data:", "#")):
            continue
        if _is_external(ref) or ref.startswith("/"):
            raise LocaliseError(f"{path} in {pkg.tarball.name} refers to {ref}, not a package file")
        asset = posixpath.normpath(
            posixpath.join(posixpath.dirname(path), re.split(r"[?#]", ref)[0])
        )
        if asset not in pkg:
            raise LocaliseError(f"{path} refers to {ref}, missing from {pkg.tarball.name}")
        copy_with_assets(pkg, asset, dest_root, seen)


class Vendorer:
    """Localises CDN URLs into ``<html_dir>/vendor/``, each URL once."""

    def __init__(self, html_dir: Path, cache_dir: Path, *, allow_substitutes: bool) -> None:
        self.html_dir = html_dir
        self.cache_dir = cache_dir
        self.allow_substitutes = allow_substitutes
        self._packages: dict[tuple[str, str], Package] = {}
        self._done: dict[tuple[str, str | None], Localised] = {}
        self._copied: dict[tuple[str, str], set[str]] = {}

    def _package(self, name: str, version: str) -> Package:
        key = (name, version)
        if key not in self._packages:
            self._packages[key] = Package(fetch_package(self.cache_dir, name, version))
        return self._packages[key]

    def localise(self, url: str, integrity: str | None) -> Localised:
        key = (url, integrity)
        if key in self._done:
            return self._done[key]
        ref = npm_file_for_url(url)
        notes: list[str] = []
        version = ref.version
        substitute = VERSION_SUBSTITUTES.get((ref.name, ref.version))
        if substitute:
            if not self.allow_substitutes:
                raise LocaliseError(
                    f"{ref.name}@{ref.version} is not on npm; the listed substitute "
                    f"{substitute} is refused by --no-substitutes"
                )
            version = substitute
            notes.append(f"{ref.name}@{ref.version} is not on npm; substituted {version}")
        pkg = self._package(ref.name, version)
        chosen, choose_notes = choose_file(pkg, ref, integrity)
        notes += choose_notes
        pkg_dir = f"{ref.name.lstrip('@').replace('/', '__')}-{version}"
        dest_root = self.html_dir / VENDOR_DIRNAME / pkg_dir
        copy_with_assets(
            pkg, chosen, dest_root, self._copied.setdefault((ref.name, version), set())
        )
        integrity_ok = _sri_matches(pkg.read(chosen), integrity) if integrity else None
        result = Localised(f"{VENDOR_DIRNAME}/{pkg_dir}/{chosen}", integrity_ok, notes)
        self._done[key] = result
        return result


# --------------------------------------------------------------------------- HTML rewriting


def parse_attrs(text: str) -> list[tuple[str, str | None]]:
    """Attributes of a tag body, in order, values unescaped (``None`` for bare attributes)."""
    attrs: list[tuple[str, str | None]] = []
    for m in ATTR_RE.finditer(text):
        name, dq, sq, bare = m.groups()
        value = next((v for v in (dq, sq, bare) if v is not None), None)
        attrs.append((name.lower(), html.unescape(value) if value is not None else None))
    return attrs


def render_tag(tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> str:
    body = "".join(
        f" {name}" if value is None else f' {name}="{html.escape(value, quote=True)}"'
        for name, value in attrs
    )
    return f"<{tag}{body}{' /' if self_closing else ''}>"


def external_ref(tag: str, attrs: list[tuple[str, str | None]]) -> tuple[str, str] | None:
    """``(attribute, url)`` when the tag loads a resource from another host."""
    values = dict(attrs)
    if tag == "script":
        attr = "src"
    else:
        rels = set((values.get("rel") or "").lower().split())
        if not rels & RESOURCE_LINK_RELS:
            return None
        attr = "href"
    url = (values.get(attr) or "").strip()
    return (attr, url) if url and _is_external(url) else None


def rewrite_html(
    text: str,
    page: Path,
    vendorer: Vendorer,
    failures: list[str],
    messages: list[tuple[int, str]],
) -> str:
    """Return ``text`` with every external script / stylesheet pointing into vendor/.

    References that cannot be localised are left as they are and described in ``failures``;
    ``messages`` collects what was done, to be logged once the rewrite is known to stand.
    """

    def replace(m: re.Match[str]) -> str:
        tag = m.group(1).lower()
        inner = m.group(2)
        self_closing = inner.rstrip().endswith("/")
        attrs = parse_attrs(inner.rstrip().removesuffix("/") if self_closing else inner)
        found = external_ref(tag, attrs)
        if found is None:
            return m.group(0)
        attr, url = found
        integrity = dict(attrs).get("integrity")
        try:
            loc = vendorer.localise(url, integrity)
        except LocaliseError as exc:
            failures.append(f"{page}: <{tag} {attr}={url!r}>: {exc}")
            return m.group(0)
        target = vendorer.html_dir / loc.rel_to_html_dir
        rel = Path(os.path.relpath(target, page.parent)).as_posix()
        notes = list(loc.notes)
        if loc.integrity_ok is False:
            notes.append("not byte-identical to the CDN's file, so its integrity is dropped")
        if notes:
            messages.append((logging.WARNING, f"{url} -> {rel}: {'; '.join(notes)}"))
        else:
            check = " (integrity verified)" if loc.integrity_ok else ""
            messages.append((logging.INFO, f"{url} -> {rel}{check}"))
        new_attrs: list[tuple[str, str | None]] = []
        for name, value in attrs:
            if name == attr:
                new_attrs.append((name, rel))
            elif name == "integrity" and not loc.integrity_ok:
                continue
            elif name in {"crossorigin", "referrerpolicy"}:
                continue  # cross-origin settings; meaningless (and harmful on file://) locally
            else:
                new_attrs.append((name, value))
        return render_tag(m.group(1), new_attrs, self_closing)

    return TAG_RE.sub(replace, text)


def remaining_external(text: str) -> list[str]:
    refs = []
    for m in TAG_RE.finditer(text):
        found = external_ref(m.group(1).lower(), parse_attrs(m.group(2)))
        if found:
            refs.append(found[1])
    return refs


def publish_offline(html_dir: Path, cache_dir: Path, *, allow_substitutes: bool = True) -> int:
    """Localise every external script and stylesheet of the site; returns an exit status."""
    if not (html_dir / "index.html").is_file():
        logger.error("%s/index.html not found: run `asv publish` first", html_dir)
        return 2
    vendorer = Vendorer(html_dir, cache_dir, allow_substitutes=allow_substitutes)
    failures: list[str] = []
    messages: list[tuple[int, str]] = []
    rewritten: dict[Path, str] = {}
    for page in sorted(html_dir.rglob("*.html")):
        if VENDOR_DIRNAME in page.relative_to(html_dir).parts[:1]:
            continue
        text = page.read_text(encoding="utf-8")
        new = rewrite_html(text, page, vendorer, failures, messages)
        if new != text:
            rewritten[page] = new
    if failures:
        logger.error("could not localise %d reference(s); no HTML file was changed:", len(failures))
        for failure in failures:
            logger.error("  %s", failure)
        return 1
    for level, message in messages:
        logger.log(level, "%s", message)
    for page, text in rewritten.items():
        page.write_text(text, encoding="utf-8")
    left = {
        f"{page}: {url}"
        for page in html_dir.rglob("*.html")
        if VENDOR_DIRNAME not in page.relative_to(html_dir).parts[:1]
        for url in remaining_external(page.read_text(encoding="utf-8"))
    }
    if left:
        logger.error("external references remain: %s", ", ".join(sorted(left)))
        return 1
    logger.info(
        "%s is self-contained: %d page(s) rewritten, vendored files in %s/",
        html_dir,
        len(rewritten),
        html_dir / VENDOR_DIRNAME,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--html-dir",
        type=Path,
        default=DEFAULT_HTML_DIR,
        help="the site written by `asv publish` (default: .asv/html of the repository)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where npm tarballs are kept between runs (default: .asv/vendor-cache)",
    )
    parser.add_argument(
        "--no-substitutes",
        action="store_true",
        help="fail instead of using a listed substitute version for one missing from npm",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log cache hits too")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="publish_offline: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    return publish_offline(
        args.html_dir.resolve(), args.cache_dir.resolve(), allow_substitutes=not args.no_substitutes
    )


if __name__ == "__main__":
    sys.exit(main())
