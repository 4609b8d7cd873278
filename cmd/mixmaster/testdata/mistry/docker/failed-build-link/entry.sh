exit "$(cat params/_exitcode)"
