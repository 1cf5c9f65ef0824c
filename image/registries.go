package image

import (
	"fmt"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/manifest"
)

// pullOptions applies the registries configuration (mirrors, blocked,
// insecure, a location rewrite) and the manifest cache to the registry
// options of one reference; it returns the repository to pull from.
func (o Options) pullOptions(ref manifest.Reference, fo fetch.Options) (name.Repository, fetch.Options, error) {
	repo := ref.Context()
	if o.CacheDir != "" && fo.ManifestCacheDir == "" {
		fo.ManifestCacheDir = filepath.Join(o.CacheDir, "manifests")
	}
	if o.Registries == nil {
		return repo, fo, nil
	}
	p := o.Registries.For(ref.Registry, ref.Repository, ref.Digest != "")
	if p.Blocked {
		return repo, fo, fmt.Errorf("%s: registry %s is blocked by %v", ref, ref.Registry, o.Registries.Sources)
	}
	if p.Insecure {
		fo.Insecure, fo.AllowPlainHTTP = true, true
	}
	if p.Host != ref.Registry || p.Repository != ref.Repository {
		var nameOpts []name.Option
		if fo.PlainHTTP {
			nameOpts = append(nameOpts, name.Insecure)
		}
		r, err := name.NewRepository(p.Host+"/"+p.Repository, nameOpts...)
		if err != nil {
			return repo, fo, fmt.Errorf("%s: registries.conf location %s/%s: %w", ref, p.Host, p.Repository, err)
		}
		repo = r
	}
	fo.Mirrors = nil
	for _, m := range p.Mirrors {
		fo.Mirrors = append(fo.Mirrors, fetch.Mirror{Host: m.Host, Repository: m.Repository, PlainHTTP: m.PlainHTTP,
			Insecure: m.Insecure, Tags: m.Tags, Digests: m.Digests})
	}
	return repo, fo, nil
}
