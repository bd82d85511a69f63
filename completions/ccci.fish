# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ccci_global_optspecs
    string join \n config= h/help V/version
end

function __fish_ccci_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ccci_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ccci_using_subcommand
    set -l cmd (__fish_ccci_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ccci -n "__fish_ccci_needs_command" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_needs_command" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_needs_command" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "test" -d 'Test a recipe: deploy it, run the stages, tear down, report the verdict'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "prepare" -d 'Step by step: create a run directory (no fetch, no deploy) and print its id'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "fetch" -d 'Step: fetch the run\'s recipe, resolve its ref, and fix its app domain'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "overlay" -d 'Print the compose overlay ccci would deploy with a recipe (compose.ccci.yml)'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "deploy" -d 'Step: deploy the run\'s change (or a published version), creating the app if needed'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "wait" -d 'Step: wait until the run\'s app is ready (swarm readiness, then the recipe\'s probe)'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "check" -d 'Step: run a stage\'s tests against the run\'s app'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "backup" -d 'Step: back up the run\'s app'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "restore" -d 'Step: restore the run\'s app from its last backup'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "teardown" -d 'Tear an app down: stack, containers, volumes, secrets, configs, networks, env file'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "janitor" -d 'Reap what killed runs leaked; never touches a live run'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "doctor" -d 'Check this host for ccci: docker, swarm, IPVS, abra, the proxy network, lock and runs dirs'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "locks" -d 'List app-domain locks: held or free, holder, pid, age'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "apps" -d 'List this setup\'s test apps: live, kept (until when, and how to remove), or orphaned'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "serve" -d 'Run the service mode: `!testme` on a pull request becomes a run, reported back on it, with a live log and a dashboard (configured in the config file\'s `serve:` section)'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "logs" -d 'Print a run\'s log, or follow it (--follow) until the run finishes'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c ccci -n "__fish_ccci_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ccci -n "__fish_ccci_using_subcommand test" -s s -l stage -d 'Stage to run: install, upgrade, backup or all; repeat or comma-separate for several' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l source -d 'Git URL or local path of the recipe (default: <recipe_base_url>/<recipe>.git)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l ref -d 'Commit, branch or tag to test (default: the default branch\'s head)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l domain -d 'App domain to deploy on (default: a generated test domain)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l run-id -d 'Run id (default: manual-<pid>)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l driver -d 'Deploy driver' -r -f -a "auto\t'abra when it is on PATH, else stack'
abra\t'The abra CLI'
stack\t'docker stack deploy'"
complete -c ccci -n "__fish_ccci_using_subcommand test" -l tests-dir -d 'A tests-recipes directory that overrides the configured and bundled ones' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand test" -l from -d 'Published version the upgrade starts from (default: the last one before the change)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l keep -d 'Keep the app deployed afterwards' -r -f -a "never\t''
on-failure\t''
always\t''"
complete -c ccci -n "__fish_ccci_using_subcommand test" -l keep-for -d 'How long a kept app is left alone before the janitor reaps it, e.g. 4h (default: the config\'s keep_for)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l deadline -d 'Stop, tear down and exit 142 after this long, e.g. 45m (default: from the config)' -r
complete -c ccci -n "__fish_ccci_using_subcommand test" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand test" -l no-overlay -d 'Deploy without ccci\'s compose overlay (shows what the overlay fixes)'
complete -c ccci -n "__fish_ccci_using_subcommand test" -l json -d 'Print the run record as JSON on stdout at the end'
complete -c ccci -n "__fish_ccci_using_subcommand test" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ccci -n "__fish_ccci_using_subcommand test" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -s s -l stage -d 'Stage to run: install, upgrade, backup or all; repeat or comma-separate for several' -r
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l source -d 'Git URL or local path of the recipe (default: <recipe_base_url>/<recipe>.git)' -r
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l ref -d 'Commit, branch or tag to test (default: the default branch\'s head)' -r
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l domain -d 'App domain to deploy on (default: a generated test domain)' -r
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l run-id -d 'Run id (default: manual-<pid>)' -r
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l driver -d 'Deploy driver' -r -f -a "auto\t'abra when it is on PATH, else stack'
abra\t'The abra CLI'
stack\t'docker stack deploy'"
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l tests-dir -d 'A tests-recipes directory that overrides the configured and bundled ones' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ccci -n "__fish_ccci_using_subcommand prepare" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand fetch" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand fetch" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand fetch" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand fetch" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -l source -r
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -l ref -r
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -l tests-dir -r -F
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand overlay" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -l release -d 'Deploy this published version (a release tag) instead of the change' -r
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -l no-overlay -d 'Deploy without ccci\'s compose overlay'
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand deploy" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand wait" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand wait" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand wait" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand wait" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand check" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand check" -s s -l stage -d 'Whose tests to run: install, upgrade or backup' -r
complete -c ccci -n "__fish_ccci_using_subcommand check" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand check" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand check" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand backup" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand backup" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand backup" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand backup" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand restore" -l run -d 'The run\'s id (its directory under runs_dir), from `ccci prepare` or `ccci test`' -r
complete -c ccci -n "__fish_ccci_using_subcommand restore" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand restore" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand restore" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -l domain -d 'The app\'s domain' -r
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -l run -d 'The run whose app to tear down (also records it in the run\'s run.json)' -r
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -l json
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand teardown" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand janitor" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand janitor" -l dry-run -d 'Say what would be reaped; change nothing'
complete -c ccci -n "__fish_ccci_using_subcommand janitor" -l json
complete -c ccci -n "__fish_ccci_using_subcommand janitor" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand janitor" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand doctor" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand doctor" -l json
complete -c ccci -n "__fish_ccci_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand locks" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand locks" -l json
complete -c ccci -n "__fish_ccci_using_subcommand locks" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand locks" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand apps" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand apps" -l json
complete -c ccci -n "__fish_ccci_using_subcommand apps" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand apps" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand serve" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand serve" -l check -d 'Check the configuration (and that the forge accepts the token), then exit'
complete -c ccci -n "__fish_ccci_using_subcommand serve" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand serve" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand logs" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand logs" -s f -l follow -d 'Keep printing as the log grows, until the run finishes'
complete -c ccci -n "__fish_ccci_using_subcommand logs" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand logs" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand completions" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand completions" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand completions" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand man" -l config -d 'Config file (default: $CCCI_CONFIG, else ~/.config/ccci/config.yml)' -r -F
complete -c ccci -n "__fish_ccci_using_subcommand man" -s h -l help -d 'Print help'
complete -c ccci -n "__fish_ccci_using_subcommand man" -s V -l version -d 'Print version'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "test" -d 'Test a recipe: deploy it, run the stages, tear down, report the verdict'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "prepare" -d 'Step by step: create a run directory (no fetch, no deploy) and print its id'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "fetch" -d 'Step: fetch the run\'s recipe, resolve its ref, and fix its app domain'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "overlay" -d 'Print the compose overlay ccci would deploy with a recipe (compose.ccci.yml)'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "deploy" -d 'Step: deploy the run\'s change (or a published version), creating the app if needed'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "wait" -d 'Step: wait until the run\'s app is ready (swarm readiness, then the recipe\'s probe)'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "check" -d 'Step: run a stage\'s tests against the run\'s app'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "backup" -d 'Step: back up the run\'s app'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "restore" -d 'Step: restore the run\'s app from its last backup'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "teardown" -d 'Tear an app down: stack, containers, volumes, secrets, configs, networks, env file'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "janitor" -d 'Reap what killed runs leaked; never touches a live run'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "doctor" -d 'Check this host for ccci: docker, swarm, IPVS, abra, the proxy network, lock and runs dirs'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "locks" -d 'List app-domain locks: held or free, holder, pid, age'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "apps" -d 'List this setup\'s test apps: live, kept (until when, and how to remove), or orphaned'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "serve" -d 'Run the service mode: `!testme` on a pull request becomes a run, reported back on it, with a live log and a dashboard (configured in the config file\'s `serve:` section)'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "logs" -d 'Print a run\'s log, or follow it (--follow) until the run finishes'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "completions" -d 'Print shell completions'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c ccci -n "__fish_ccci_using_subcommand help; and not __fish_seen_subcommand_from test prepare fetch overlay deploy wait check backup restore teardown janitor doctor locks apps serve logs completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
