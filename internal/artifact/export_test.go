package artifact

// StripeOf exposes the lock stripe of a key to the tests.
var StripeOf = stripeOf
