package api

import (
	"net/http"

	"mixmaster"
)

// crossOrigin tells browser requests made by another site's page apart,
// from Sec-Fetch-Site, or Origin against Host. Requests without either
// header (curl, forges, the mistry client) are not from a browser and pass.
var crossOrigin = http.NewCrossOriginProtection()

// crossSite refuses a state-changing request that a browser marks as sent
// by another site: such a page must not act through a visitor's login,
// trusted network or loopback address.
func crossSite(r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return mixmaster.Errorf(mixmaster.EFORBIDDEN, "Cross-origin request refused.")
	}
	return nil
}
