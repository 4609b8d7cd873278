package mixmaster

import "strings"

// The runner brackets the checkout of a webhook build between two status
// lines, so that a job page can fold the service's git lines away under
// the closing one and show the build's own command and output first.
const (
	// CheckoutBegin starts the line that opens a checkout:
	// "Checking out <ref> of <url>".
	CheckoutBegin = "Checking out "
	// CheckoutDone starts the line that closes a checkout that worked:
	// "Checked out <commit> of <url> (<n> git commands, <t> s)".
	CheckoutDone = "Checked out "
	// CheckoutFailed starts the line that closes one that did not.
	CheckoutFailed = "Checkout failed"
)

// ClosesCheckout reports whether the text of a status line closes a
// checkout.
func ClosesCheckout(text string) bool {
	return strings.HasPrefix(text, CheckoutDone) || strings.HasPrefix(text, CheckoutFailed)
}
