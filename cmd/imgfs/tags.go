package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
)

func init() { registerCommand(newTagsCommand) }

func newTagsCommand(a *app) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "tags REPOSITORY",
		Short: "List the tags of a repository",
		Long: `List the tags of REPOSITORY in its registry, one per line, in the registry's
order (GET /v2/<name>/tags/list, every page). A tag or digest in the
reference is ignored. For a local source (oci:DIR, oci-archive:FILE,
docker-archive:FILE) it lists the names of the images it holds.`,
		Example: `  imgfs tags alpine
  imgfs tags --json ghcr.io/org/app
  imgfs --plain-http tags 127.0.0.1:5000/tools/app
  imgfs tags oci-archive:./images.tar`,
		Args: exactArgs("REPOSITORY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := a.imageOptions(cmd)
			if err != nil {
				return err
			}
			tags, err := image.Tags(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if jsonOut {
				if tags == nil {
					tags = []string{}
				}
				return printJSON(cmd.OutOrStdout(), tags)
			}
			for _, t := range tags {
				fmt.Fprintln(cmd.OutOrStdout(), escapeName(t))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print a JSON array")
	return cmd
}
