package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/imgfs/imgfs/fetch/registries"
	"github.com/imgfs/imgfs/image"
)

// clusterFlags are the global flags for many nodes sharing one image:
// index artifacts, mirrors, shared cache dirs.
type clusterFlags struct {
	indexSource    string
	cacheDirRO     []string
	registryMirror []string
	registriesConf string
	cacheLayers    bool
}

func addClusterFlags(pf *pflag.FlagSet, f *clusterFlags) {
	pf.StringVar(&f.indexSource, "index-source", string(image.IndexAuto), "where layer indexes come from: auto (an index artifact in the registry when there is a matching one, else built here), registry (artifacts only), local (built here)")
	pf.StringSliceVar(&f.cacheDirRO, "cache-dir-ro", nil, "read-only cache dirs searched for layer indexes after --cache-dir (a shared cache prepared by an admin; comma-separated or repeated)")
	pf.StringArrayVar(&f.registryMirror, "registry-mirror", nil, "ORIGIN=MIRROR: try MIRROR (a mirror or pull-through cache; http://HOST for plain HTTP) before ORIGIN (e.g. docker.io), first of all mirrors; repeatable")
	pf.BoolVar(&f.cacheLayers, "cache-layers", false, "keep the gzip and zstd layers that index builds download under <cache-dir>/blobs and read from them (for a cache dir shared by many nodes: each layer is downloaded once)")
	pf.StringVar(&f.registriesConf, "registries-conf", "", "containers-registries.conf(5) file to read instead of $HOME/.config/containers/registries.conf or /etc/containers/registries.conf (and their .d dirs)")
}

// applyCluster sets the image options the cluster flags select.
func (a *app) applyCluster(o *image.Options) error {
	f := a.cluster
	source, err := image.ParseIndexSource(f.indexSource)
	if err != nil {
		return usageErrorf("--index-source: %w", err)
	}
	o.IndexSource = source
	o.KeepBlobs = f.cacheLayers
	for _, d := range f.cacheDirRO {
		if d = strings.TrimSpace(d); d != "" {
			o.ReadOnlyCacheDirs = append(o.ReadOnlyCacheDirs, d)
		}
	}
	file, dirs := registries.Paths(f.registriesConf, a.getenv("HOME"))
	cfg, err := registries.Load(file, dirs)
	if err != nil {
		return fmt.Errorf("registries configuration: %w", err)
	}
	for _, m := range f.registryMirror {
		if err := cfg.AddMirror(m); err != nil {
			return &usageError{err: err}
		}
	}
	if len(cfg.Registries) > 0 {
		o.Registries = cfg
		a.logger.Info("registries configuration", "files", cfg.Sources, "entries", len(cfg.Registries))
	}
	return nil
}
