package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/cmd/offshoot/internal/servetls"
)

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		return &cobra.Command{
			Use:   "ca",
			Short: "Print the CA certificate (PEM) that clients trust to verify this data dir's server",
			Long: `ca prints the CA certificate that offshoot serve generated into
<data-dir>/tls/ca.crt, for clients to verify the server: psql with
sslmode=verify-full sslrootcert=<file>, the CLI with --ca-file, browsers.
Its SHA-256 fingerprint goes to stderr, to compare with serve's banner. It
reads the data dir and needs no running server.`,
			Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				pem, c, err := servetls.LoadCA(servetls.Dir(a.cfg.DataDir))
				if errors.Is(err, servetls.ErrNoCA) {
					return &exitError{code: exitNotFound, err: fmt.Errorf("%w: start `offshoot serve --data-dir %s` once (without --tls-cert) to generate it", err, a.cfg.DataDir)}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "SHA-256 fingerprint %s\n", servetls.Fingerprint(c))
				_, err = a.stdout.Write(pem)
				return err
			},
		}
	})
}
