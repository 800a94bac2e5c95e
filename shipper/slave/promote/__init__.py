"""`shipper promote`: put a set in place on the slave and make it the master.

The run is preflight (checks, each OK or what to do), plan (what will
change), then these steps, each recorded in <state_dir>/promote/<set>.json
the moment it finishes, so a run that was interrupted (SIGKILL included)
resumes where it stopped:

  receiver          stop the receiver for good: the old master can no longer push
  files             restic restore of the files part in place, inside `paths` only
  globals:<engine>  users, grants, roles (before the databases that need them)
  database:<part>   each database dump, loaded under a temporary name and swapped
  hook:<name>       each post-restore hook
  role              the config says master; the schedule stays disabled

Every step is idempotent, so redoing one that finished but was not yet
recorded gives the same result; the role change is last, so a server whose
config says master has finished everything before it.
"""
