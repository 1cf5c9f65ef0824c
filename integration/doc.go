// Package integration holds the end-to-end harness of imgfs: a real
// registry (Debian's docker-registry, distribution 2.8) with no auth,
// htpasswd or token auth, a Docker token server, a builder of layers, images
// and indexes in every format imgfs reads, a pusher, and an OCI-layout +
// umoci oracle. Test files of this package, and later issues, reuse it.
package integration
