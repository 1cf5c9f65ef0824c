// Package image opens a container image for reading, once, for every
// command and for the mount: it resolves the reference in its registry
// (one authenticated client for manifests and blobs), opens each layer's
// blob and index (loading it from the cache dir, else building it, with
// progress), merges the layers into one tree (adding what Apptainer
// expects when asked) and serves file content through the span cache.
//
//	img, err := image.Open(ctx, "docker://alpine:3.20", image.Options{CacheDir: dir})
//	defer img.Close()
//	f, err := img.Open(ctx, "/etc/os-release")
//	f.WriteTo(os.Stdout)
//
// Data flows one way below it: manifest (what the image is) → fetch (bytes
// from the registry) → index (where each file's bytes are, verified) → fs
// (the merged tree and FUSE). This package is where they are wired
// together; cmd/imgfs only parses flags and prints.
package image
