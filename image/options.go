package image

import (
	"log/slog"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fetch/registries"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/manifest"
)

// Options say how to reach an image and what to prepare of it.
type Options struct {
	// Platform is the one to pick from a multi-platform image; zero means
	// the host's. PlatformFrom names where it came from ("--platform",
	// "APPTAINER_DOCKER_ARCHITECTURE", ...) for logs and errors; see
	// manifest.WantedPlatform.
	Platform     ocispec.Platform
	PlatformFrom string
	// Registry is how to talk to the registry: plain HTTP, TLS,
	// credentials, retries, user agent, transport. Its Logger defaults to
	// Logger.
	Registry fetch.Options

	// CacheDir holds layer indexes (<CacheDir>/index) and, when Open makes
	// the span cache with a disk tier, decoded data (<CacheDir>/spans);
	// "" stores nothing and builds every index.
	CacheDir string
	// Cache keeps decoded spans; several images may share one (layers
	// shared between them are then cached once). nil: Open makes one from
	// MemoryCache and DiskCache, and Close closes it.
	Cache *cache.Cache
	// MemoryCache bounds the span cache Open makes in memory (0:
	// cache.DefaultMemoryBytes); DiskCache > 0 adds a disk tier of that
	// many bytes under CacheDir.
	MemoryCache int64
	DiskCache   int64
	// FileCopies > 0 keeps, under CacheDir (<CacheDir>/files), up to that
	// many bytes of whole copies of files read to their end, for a mount
	// to hand to the kernel (FUSE passthrough; see Image.FileCopies).
	FileCopies int64
	// Copies, when set, is where file copies go (several images may share
	// one, and its budget); it overrides FileCopies.
	Copies *cache.Copies
	// Decode bounds the bytes being fetched and decoded at once by the
	// reads of this image (share one between images sharing Cache); nil:
	// one of index.DefaultDecodeBytes for this image.
	Decode *index.DecodeLimit

	// LayerLock, when set, is held around the opening (and building) of
	// each layer's index, by layer digest: a server opening several
	// images at once makes a layer they share be indexed (and fetched)
	// once. It returns the unlock function.
	LayerLock func(layer digest.Digest) (unlock func())

	// Synthesize adds, in memory, the /.singularity.d and mount-point
	// stubs Apptainer expects of a container directory (see fs.Synthesize).
	Synthesize bool
	// Registries is the registries configuration (mirrors, blocked and
	// insecure registries; see fetch/registries); nil: none.
	Registries *registries.Config
	// ReadOnlyCacheDirs are searched for layer indexes after CacheDir and
	// never written (a cache a site prepared on a shared file system).
	ReadOnlyCacheDirs []string
	// KeepBlobs keeps the gzip and plain zstd layers that index builds
	// stream under <CacheDir>/blobs and serves reads from them: on a
	// cache dir shared by many nodes, a layer then crosses the network
	// once (see keptblob.go).
	KeepBlobs bool
	// IndexSource says whether layer indexes may come from an index
	// artifact in the registry (see artifact.go); "": IndexAuto.
	IndexSource IndexSource
	// Progress hears about index builds; nil: nobody.
	Progress Progress
	Logger   *slog.Logger // nil: slog.Default()

	// imageManifest hears from resolve about the image manifest before its
	// config is fetched (Open starts artifact discovery then).
	imageManifest func(repo *fetch.Repository, scope string, d digest.Digest, mediaType string, layers []manifest.Layer)
}

// Progress hears about the layer indexes Open builds.
type Progress interface {
	// Layer is called for layer i of n before its index is opened; the
	// returned LayerProgress hears about a build, if one is needed.
	Layer(i, n int, l manifest.Layer) LayerProgress
}

// LayerProgress hears about one layer's index build.
type LayerProgress interface {
	// Update reports compressed bytes consumed so far; only called when
	// the index is being built, not loaded.
	Update(done, total int64)
	// Done is called once the index is open (err nil) or failed.
	Done(err error)
}

// indexParallelism bounds how many layers are indexed at once: each build
// streams one blob and keeps a core busy inflating it.
const indexParallelism = 3

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}
