package fetch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// manifestCache keeps manifests by digest on disk: a manifest's digest is
// the hash of its bytes, so a stored one never goes stale. Each file is
// <dir>/<algorithm>/<hex>: the media type, a newline, the manifest bytes;
// it is checked against its name when read, written atomically.
type manifestCache struct{ dir string }

func (c *manifestCache) path(d digest.Digest) string {
	return filepath.Join(c.dir, string(d.Algorithm()), d.Encoded())
}

// get returns the stored manifest with digest d, or nil.
func (c *manifestCache) get(d digest.Digest) *ManifestResponse {
	if c == nil || d.Validate() != nil {
		return nil
	}
	data, err := os.ReadFile(c.path(d))
	if err != nil {
		return nil
	}
	mt, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok || d.Algorithm().FromBytes(body) != d {
		return nil // damaged: fetched again, and overwritten
	}
	return &ManifestResponse{Body: body, MediaType: string(mt), DockerContentDigest: d}
}

// any reports whether the cache may hold anything: a HEAD of a tag is
// worth it only then (a first pull GETs at once).
func (c *manifestCache) any() bool {
	if c == nil {
		return false
	}
	_, err := os.Stat(c.dir)
	return err == nil
}

// put stores m under the digest of its bytes; best effort.
func (c *manifestCache) put(m *ManifestResponse) {
	if c == nil || m == nil || m.MediaType == signedSchema1MediaType || strings.ContainsAny(m.MediaType, "\n") {
		return
	}
	d := digest.FromBytes(m.Body)
	path := c.path(d)
	if _, err := os.Stat(path); err == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+d.Encoded()+".tmp-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(append([]byte(m.MediaType+"\n"), m.Body...))
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Chmod(tmp.Name(), 0o644) != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

// manifest GETs a manifest, by tag or digest, with the fewest requests
// that count against a registry's pull limits:
//   - by digest: from the manifest cache, else the mirrors, else the
//     registry; stored in the cache;
//   - by tag: through the mirrors that resolve tags, if any; else, when
//     the manifest cache or a mirror can serve content, the tag is
//     resolved with a HEAD request (Docker Hub does not count HEADs) and
//     the manifest taken by digest as above; else a GET.
func (r *repository) manifest(ctx context.Context, ref string, accept []string) (*ManifestResponse, error) {
	if digestRef(ref) {
		d := digest.Digest(ref)
		if m := r.manifests.get(d); m != nil {
			r.log.LogAttrs(ctx, slog.LevelInfo, "manifest from the manifest cache", slog.String("digest", ref))
			return m, nil
		}
		return r.fetchManifest(ctx, ref, true, accept)
	}
	for _, m := range r.mirrors {
		if m.cfg.Tags {
			return r.fetchManifest(ctx, ref, false, accept)
		}
	}
	if r.manifests.any() || r.hasDigestMirrors() {
		if d, err := r.headManifest(ctx, ref, accept); err == nil {
			if m := r.manifests.get(d); m != nil {
				r.log.LogAttrs(ctx, slog.LevelInfo, "manifest from the manifest cache (tag resolved with HEAD)",
					slog.String("tag", ref), slog.String("digest", d.String()))
				return m, nil
			}
			if m, ok := r.manifestFromMirrors(ctx, d.String(), true, accept); ok {
				m.DockerContentDigest = d
				r.manifests.put(m)
				return m, nil
			}
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		} else {
			r.log.LogAttrs(ctx, slog.LevelDebug, "HEAD of a tag failed; using GET", slog.String("tag", ref), slog.String("error", err.Error()))
		}
	}
	return r.fetchManifest(ctx, ref, false, accept)
}

// fetchManifest asks the eligible mirrors, then the registry, and stores
// the answer in the manifest cache.
func (r *repository) fetchManifest(ctx context.Context, ref string, byDigest bool, accept []string) (*ManifestResponse, error) {
	m, ok := r.manifestFromMirrors(ctx, ref, byDigest, accept)
	if !ok {
		var err error
		if m, err = r.manifestDirect(ctx, ref, accept); err != nil {
			return nil, err
		}
	}
	if byDigest || m.DockerContentDigest == "" || m.DockerContentDigest == digest.FromBytes(m.Body) {
		r.manifests.put(m)
	}
	return m, nil
}

func (r *repository) hasDigestMirrors() bool {
	for _, m := range r.mirrors {
		if m.cfg.Digests {
			return true
		}
	}
	return false
}

// errHeadNotFound: a HEAD of a manifest answered 404.
var errHeadNotFound = fmt.Errorf("manifest %w", ErrNotFound)

// headManifest resolves a tag to the digest the registry would serve for
// accept, from the Docker-Content-Digest of a HEAD request.
func (r *repository) headManifest(ctx context.Context, tag string, accept []string) (digest.Digest, error) {
	if !validTag(tag) {
		return "", fmt.Errorf("invalid tag %q", tag)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, r.url("manifests", tag), nil)
	if err != nil {
		return "", err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := r.do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", errHeadNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD manifest %s: %s", tag, resp.Status)
	}
	d, err := digest.Parse(strings.TrimSpace(resp.Header.Get("Docker-Content-Digest")))
	if err != nil {
		return "", fmt.Errorf("HEAD manifest %s: no usable Docker-Content-Digest: %w", tag, err)
	}
	return d, nil
}
