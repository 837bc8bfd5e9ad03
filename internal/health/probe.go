package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
)

// ReadyURL is the readiness URL of an opsd listening on listen: a wildcard or empty host is
// probed on loopback.
func ReadyURL(listen string) string {
	addr := listen
	if host, port, err := net.SplitHostPort(listen); err == nil {
		switch host {
		case "", "0.0.0.0", "::":
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, port)
	}
	return "http://" + addr + "/health/ready"
}

// Probe asks url whether opsd is ready: nil on 200, an error naming the URL otherwise.
func Probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}
