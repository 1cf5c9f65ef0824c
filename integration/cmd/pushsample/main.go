// Command pushsample pushes a small sample image, built with the
// integration fixture builder, to a registry: the image of scripts/demo.sh.
//
//	go run ./integration/cmd/pushsample -registry 127.0.0.1:5000 -repo demo/sample -tag latest
//
// It prints the pushed reference (by tag) on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/integration"
)

func main() {
	var (
		registry = flag.String("registry", "", "registry host:port (required)")
		repo     = flag.String("repo", "demo/sample", "repository")
		tag      = flag.String("tag", "latest", "tag")
		format   = flag.String("format", "gzip", "layer compression: tar, gzip, zstd, estargz")
		multi    = flag.Bool("multi-platform", false, "push an OCI index of linux/amd64, linux/arm64, linux/arm/v7")
		username = flag.String("username", os.Getenv("PUSHSAMPLE_USERNAME"), "user name (or $PUSHSAMPLE_USERNAME)")
		password = flag.String("password", os.Getenv("PUSHSAMPLE_PASSWORD"), "password (or $PUSHSAMPLE_PASSWORD)")
	)
	flag.Parse()
	if *registry == "" {
		fmt.Fprintln(os.Stderr, "pushsample: -registry is required")
		os.Exit(2)
	}
	target := integration.Target{Host: *registry, Auth: authn.Anonymous}
	if *username != "" {
		target.Auth = &authn.Basic{Username: *username, Password: *password}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := push(ctx, target, *repo, *tag, integration.Compression(*format), *multi); err != nil {
		slog.Error("pushsample failed", "err", err)
		os.Exit(1)
	}
	fmt.Printf("%s/%s:%s\n", *registry, *repo, *tag)
}

func push(ctx context.Context, target integration.Target, repo, tag string, compression integration.Compression, multi bool) error {
	platforms := []ocispec.Platform{integration.LinuxAMD64}
	if multi {
		platforms = append(platforms, integration.LinuxARM64, integration.LinuxARMv7)
	}
	var images []*integration.BuiltImage
	for _, p := range platforms {
		img, err := sampleImage(compression, p)
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	if !multi {
		return integration.PushImage(ctx, target, repo, tag, images[0])
	}
	idx, err := integration.BuildIndex(integration.OCI, images...)
	if err != nil {
		return err
	}
	return integration.PushIndex(ctx, target, repo, tag, idx)
}

// busyboxPath is Debian's busybox-static.
const busyboxPath = "/bin/busybox"

// sampleImage is a tiny two-layer image: a base tree and an upper layer that
// overrides, deletes and adds files.
func sampleImage(compression integration.Compression, p ocispec.Platform) (*integration.BuiltImage, error) {
	arch := p.Architecture
	if p.Variant != "" {
		arch += "/" + p.Variant
	}
	baseEntries := []integration.Entry{
		integration.Dir("etc"),
		integration.File("etc/os-release", "NAME=imgfs-sample\nID=imgfs\n"),
		integration.File("etc/motd", "this line is replaced by the upper layer\n"),
		integration.File("etc/obsolete.conf", "deleted by a whiteout\n"),
		integration.Dir("usr"), integration.Dir("usr/share"), integration.Dir("usr/share/doc"),
		integration.File("usr/share/doc/README", "A sample image pushed by integration/cmd/pushsample.\n"),
		integration.Dir("bin"),
		{Path: "bin/hello", Type: integration.TypeFile, Mode: 0o755, Content: []byte("#!/bin/sh\necho hello from imgfs\n")},
		integration.Symlink("bin/hi", "hello"),
	}
	// With the host's static busybox the image can run commands: the demo
	// runs one inside the mount.
	if data, err := os.ReadFile(busyboxPath); err == nil {
		baseEntries = append(baseEntries,
			integration.Entry{Path: "bin/busybox", Type: integration.TypeFile, Mode: 0o755, Content: data},
			integration.Symlink("bin/sh", "busybox"))
	}
	base, err := integration.BuildLayer(integration.LayerSpec{Compression: compression, Entries: baseEntries})
	if err != nil {
		return nil, err
	}
	upper, err := integration.BuildLayer(integration.LayerSpec{Compression: compression, Entries: []integration.Entry{
		integration.File("etc/motd", "Welcome to the imgfs sample ("+arch+").\n"),
		integration.Whiteout("etc/obsolete.conf"),
		{Path: "tmp", Type: integration.TypeDir, Mode: 0o1777},
	}})
	if err != nil {
		return nil, err
	}
	return integration.BuildImage(integration.ImageSpec{
		Kind:     integration.OCI,
		Platform: p,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SAMPLE=imgfs"},
			Entrypoint: []string{"/bin/hello"},
			Labels:     map[string]string{"org.opencontainers.image.title": "imgfs sample", "org.opencontainers.image.description": "pushed by pushsample"},
			WorkingDir: "/",
		},
		Layers: []*integration.BuiltLayer{base, upper},
	})
}
