package app

import (
	"context"
	"os"
	"time"

	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/resilience"
)

// ConfigCheck is the health check "config" that app.Run adds to every
// service: which configuration the service runs with. Without
// $SWITCHBOARD_RESILIENCE it is healthy on the built-in defaults. With a
// file it is healthy while the file is as it was loaded; degraded once the
// file changed on disk (the service keeps what it loaded: restart it to
// apply the change), and says so louder when the new content would not
// even load, or the file is gone, so a bad edit is seen before a restart
// makes it fatal.
func ConfigCheck(path string, loaded time.Time) health.CheckFunc {
	if path == "" {
		return func(context.Context) health.Result {
			return health.OK("built-in defaults ($%s is not set)", EnvResilience)
		}
	}
	return func(context.Context) health.Result {
		fi, err := os.Stat(path)
		if err != nil {
			return health.Degradedf("loaded %s at start; it is unreadable now (%v): a restart would fail", path, err)
		}
		if !fi.ModTime().After(loaded) {
			return health.OK("loaded %s", path)
		}
		if _, err := resilience.LoadConfig(path); err != nil {
			return health.Degradedf("%s changed since it was loaded and no longer loads (%v): the service runs the old one; a restart would fail", path, err)
		}
		return health.Degradedf("%s changed since it was loaded: restart the service to apply it", path)
	}
}
