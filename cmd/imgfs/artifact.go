package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
)

// pushIndexes publishes the image's indexes as an index artifact. With
// onlyBuilt (--push-index) it does so only if some index was built here
// now, and a failure is one warning; otherwise (--push) it is an error.
func pushIndexes(cmd *cobra.Command, img *image.Image, log *slog.Logger, onlyBuilt bool) error {
	if onlyBuilt {
		built := false
		for _, l := range img.Layers() {
			built = built || l.Index.How() == index.HowBuilt && l.Index.Pushable()
		}
		if !built {
			log.Info("no index built here: nothing to publish")
			return nil
		}
	}
	res, err := img.PushIndexes(cmd.Context())
	if err != nil {
		if onlyBuilt {
			log.Warn("could not publish the index artifact (the mount works without it)", "err", err)
			return nil
		}
		return fmt.Errorf("push index artifact: %w", err)
	}
	if res.Existing {
		log.Info("the registry already has these indexes", "artifact", res.Artifact)
		if !onlyBuilt {
			fmt.Fprintf(cmd.OutOrStdout(), "index artifact %s already in %s/%s (%d layer indexes)\n", res.Artifact, img.Manifest.Registry, img.Manifest.Repository, res.Layers)
		}
		return nil
	}
	log.Info("published the index artifact", "artifact", res.Artifact, "layers", res.Layers)
	if !onlyBuilt {
		fmt.Fprintf(cmd.OutOrStdout(), "pushed index artifact %s to %s/%s (%d layer indexes)\n", res.Artifact, img.Manifest.Registry, img.Manifest.Repository, res.Layers)
	}
	return nil
}

// verifyIndexes compares the artifact with the indexes built here.
func verifyIndexes(cmd *cobra.Command, img *image.Image) error {
	res, err := img.VerifyIndexes(cmd.Context())
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if len(res) == 0 {
		return errors.New("verify: the image's index artifact has no index of its layers")
	}
	bad := 0
	for _, r := range res {
		state := "identical"
		if !r.Match {
			state = "DIFFERS"
			bad++
		}
		fmt.Fprintf(cmd.OutOrStdout(), "layer %s: artifact index %s: %s\n", shortDigest(r.Layer.Digest.String()), shortDigest(r.Artifact.String()), state)
	}
	if bad > 0 {
		return fmt.Errorf("verify: %d of %d layer indexes in the registry differ from those built here from verified bytes", bad, len(res))
	}
	return nil
}
