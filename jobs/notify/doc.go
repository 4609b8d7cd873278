// Package notify sends job notifications by email, through an SMTP relay
// or a sendmail-style command. Mailer implements mixmaster.Notifier; mail
// goes out in the background so a slow relay never holds up a build.
package notify
