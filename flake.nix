{
  description = "ccci: tests Co-op Cloud recipe changes on a real Docker Swarm";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # ccci relies on Linux-only kernel facilities (prctl parent-death signal, flock on tmpfs).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
    in
    {
      packages = forAllSystems (pkgs: {
        ccci = pkgs.rustPlatform.buildRustPackage {
          pname = "ccci";
          inherit (cargoToml.package) version;

          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./src
              (lib.fileset.maybeMissing ./build.rs)
              (lib.fileset.maybeMissing ./completions)
              (lib.fileset.maybeMissing ./man)
              (lib.fileset.maybeMissing ./recipes)
              (lib.fileset.maybeMissing ./tests-recipes)
            ];
          };

          cargoLock.lockFile = ./Cargo.lock;

          nativeBuildInputs = [ pkgs.installShellFiles ];

          # The test suite deploys onto a real Docker Swarm and uses real locks and signals;
          # none of that exists in the build sandbox.
          doCheck = false;

          # Completions and man pages are generated from the CLI definition and committed.
          postInstall = ''
            installShellCompletion --cmd ccci \
              --bash completions/ccci.bash \
              --zsh completions/_ccci \
              --fish completions/ccci.fish
            installManPage man/*.1

            mkdir -p $out/share/ccci
            for dir in recipes tests-recipes; do
              if [ -d "$dir" ]; then
                cp -r "$dir" "$out/share/ccci/$dir"
              fi
            done
          '';

          meta = {
            inherit (cargoToml.package) description;
            license = lib.licenses.agpl3Plus;
            mainProgram = "ccci";
            platforms = lib.platforms.linux;
          };
        };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.ccci;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.ccci ];
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.shellcheck
            pkgs.docker-client
            pkgs.git
          ];
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

      overlays.default = final: _prev: {
        ccci = self.packages.${final.stdenv.hostPlatform.system}.ccci;
      };

      # The janitor as a systemd oneshot started by a timer, `ccci serve` as a long-running
      # service, the lock directory on tmpfs, and the host's ccci configuration in
      # /etc/ccci/config.yml (one file for both, and for runs started by hand).
      nixosModules.default =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        let
          cfg = config.services.ccci.janitor;
          serveCfg = config.services.ccci.serve;
          settingsFormat = pkgs.formats.yaml { };
          defaultPackage = self.packages.${pkgs.stdenv.hostPlatform.system}.ccci;
          # systemd puts a service's LoadCredential= files here; the config names them by path.
          credentials = "/run/credentials/ccci-serve.service";
          webhookCredential = i: "webhook-secret-${toString i}";
          # The `serve:` section as ccci reads it: the settings given, with the secrets read
          # from the service's credentials.
          serveSection =
            serveCfg.settings
            // {
              forge = (serveCfg.settings.forge or { }) // {
                token.file = "${credentials}/forge-token";
              };
            }
            // lib.optionalAttrs (serveCfg.webhookSecretFiles != [ ]) {
              webhook_secrets = lib.imap0 (i: _: {
                file = "${credentials}/${webhookCredential i}";
              }) serveCfg.webhookSecretFiles;
            };
          configFile = settingsFormat.generate "ccci-config.yml" (
            cfg.settings // lib.optionalAttrs serveCfg.enable { serve = serveSection; }
          );
          # Both services run as root, with the same sandbox: the engine is reached through
          # /run/docker.sock (connecting to a socket works on a read-only mount); the abra
          # home, the lock directory, the runs directory and serve's state directory are the
          # only places written.
          hardening = {
            ProtectSystem = "strict";
            ProtectHome = "read-only";
            StateDirectory = "ccci";
            PrivateTmp = true;
            NoNewPrivileges = true;
            CapabilityBoundingSet = [
              "CAP_DAC_OVERRIDE"
              "CAP_DAC_READ_SEARCH"
              "CAP_FOWNER"
            ];
            ProtectKernelTunables = true;
            ProtectKernelModules = true;
            ProtectKernelLogs = true;
            ProtectControlGroups = true;
            ProtectClock = true;
            ProtectHostname = true;
            RestrictAddressFamilies = [
              "AF_UNIX"
              "AF_INET"
              "AF_INET6"
              "AF_NETLINK"
            ];
            RestrictNamespaces = true;
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            LockPersonality = true;
            SystemCallArchitectures = "native";
            UMask = "0022";
          };
          writablePaths = [
            "-${cfg.settings.abra_dir}"
            "-${cfg.settings.lock_dir}"
            "-${cfg.settings.runs_dir}"
          ];
        in
        {
          options.services.ccci.janitor = {
            enable = lib.mkEnableOption "the ccci janitor, which reaps test apps that belong to no live run";

            package = lib.mkOption {
              type = lib.types.package;
              default = defaultPackage;
              defaultText = lib.literalExpression "ccci.packages.\${pkgs.stdenv.hostPlatform.system}.ccci";
              description = "The ccci package to run.";
            };

            interval = lib.mkOption {
              type = lib.types.str;
              default = "minutely";
              example = "*:0/5";
              description = "How often the janitor runs, as a systemd calendar expression (OnCalendar=).";
            };

            extraPackages = lib.mkOption {
              type = lib.types.listOf lib.types.package;
              default = [ ];
              example = lib.literalExpression "[ abra ]";
              description = "Programs the janitor needs on PATH besides docker and git, e.g. abra.";
            };

            settings = lib.mkOption {
              description = ''
                ccci's configuration, written to /etc/ccci/config.yml as YAML and shared by the
                janitor, `ccci serve` and runs started by hand (so all of them use the same lock
                directory). Keys are those of ccci's config file (runs_dir, lock_dir, abra_dir,
                server, domain_zone, leak_threshold, warm_apps, ...); durations are written like
                "90s", "15m", "2h". The `serve` section comes from services.ccci.serve.settings.
              '';
              default = { };
              example = {
                server = "ci.example.org";
                domain_zone = "ci.example.org";
                leak_threshold = "120m";
                warm_apps = [ "ghost.ci.example.org" ];
              };
              type = lib.types.submodule {
                freeformType = settingsFormat.type;
                options = {
                  lock_dir = lib.mkOption {
                    type = lib.types.str;
                    default = "/run/ccci/locks";
                    description = ''
                      Where app-domain lock files live. Keep it on a tmpfs: after a reboot no run
                      is live, and an empty directory lets the janitor reap leftovers at once.
                    '';
                  };
                  abra_dir = lib.mkOption {
                    type = lib.types.str;
                    default = "/root/.abra";
                    description = "The canonical abra home, whose app env files the janitor reads and removes.";
                  };
                  runs_dir = lib.mkOption {
                    type = lib.types.str;
                    default = "/var/lib/ccci/runs";
                    description = "Where run directories go.";
                  };
                };
              };
            };
          };

          options.services.ccci.serve = {
            enable = lib.mkEnableOption "`ccci serve`, which turns `!testme` comments on pull requests into test runs";

            package = lib.mkOption {
              type = lib.types.package;
              default = defaultPackage;
              defaultText = lib.literalExpression "ccci.packages.\${pkgs.stdenv.hostPlatform.system}.ccci";
              description = "The ccci package to run.";
            };

            extraPackages = lib.mkOption {
              type = lib.types.listOf lib.types.package;
              default = [ ];
              example = lib.literalExpression "[ abra pkgs.jq ]";
              description = ''
                Programs runs need on PATH besides docker, git, bash and curl: abra, and whatever
                the recipes' hooks and tests call.
              '';
            };

            forgeTokenFile = lib.mkOption {
              type = lib.types.str;
              example = "/etc/ccci/forge-token";
              description = ''
                A file holding the bot's forge token (scopes write:issue, write:repository,
                read:organization, read:user). Give it as a string, not a Nix path, or it is
                copied into the world-readable store. It is loaded with LoadCredential= and the
                config reads it as ${credentials}/forge-token.
              '';
            };

            webhookSecretFiles = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              default = [ ];
              example = [ "/etc/ccci/webhook-secret" ];
              description = ''
                Files each holding a secret webhook deliveries may be signed with (more than one
                while rotating). Empty, and no `webhook_secrets` in settings: every delivery is
                refused and only polling finds commands. Loaded with LoadCredential= as webhook-secret-0, webhook-secret-1, ...
                and written into the config as `webhook_secrets`.
              '';
            };

            settings = lib.mkOption {
              description = ''
                The `serve` section of ccci's config (listen, public_url, forge.url, repos,
                authorize, org, concurrency, state_dir, poll_interval, cancel_on_push,
                run_deadline, retention, status_context, forge_timeout, driver), written as
                YAML. `forge.token` and `webhook_secrets` are filled in from forgeTokenFile and
                webhookSecretFiles.
              '';
              default = { };
              example = {
                listen = "127.0.0.1:8470";
                public_url = "https://ci.example.org";
                forge.url = "https://git.example.org";
                repos = [
                  "coop-cloud/ghost"
                  {
                    repo = "coop-cloud/custom-html";
                    recipe = "custom-html";
                  }
                ];
                authorize = "either";
              };
              type = lib.types.submodule {
                freeformType = settingsFormat.type;
              };
            };
          };

          config = lib.mkMerge [
            (lib.mkIf (cfg.enable || serveCfg.enable) {
              environment.etc."ccci/config.yml".source = configFile;

              # Runs started by hand on this host must use the same lock directory as the
              # janitor, or the janitor cannot see that they are live.
              environment.variables.CCCI_CONFIG = "/etc/ccci/config.yml";

              # Not a RuntimeDirectory= of a service: systemd would delete it, with the locks of
              # live runs in it, every time the service stopped.
              systemd.tmpfiles.rules = [
                "d /run/ccci 0755 root root -"
                "d ${cfg.settings.lock_dir} 0755 root root -"
              ];
            })

            (lib.mkIf cfg.enable {
              environment.systemPackages = [ cfg.package ];

              systemd.services.ccci-janitor = {
                description = "ccci janitor: reap leaked Co-op Cloud test apps";
                documentation = [ "man:ccci(1)" ];
                wants = [ "docker.service" ];
                after = [
                  "docker.service"
                  "network-online.target"
                ];
                path = [
                  pkgs.docker-client
                  pkgs.git
                ]
                ++ cfg.extraPackages;
                environment = {
                  CCCI_CONFIG = "/etc/ccci/config.yml";
                  ABRA_DIR = cfg.settings.abra_dir;
                };
                restartTriggers = [ configFile ];
                serviceConfig = hardening // {
                  Type = "oneshot";
                  ExecStart = "${lib.getExe cfg.package} janitor";
                  # A reap removes stacks, volumes, secrets and configs; let a slow engine finish.
                  TimeoutStartSec = "30min";
                  Nice = 5;
                  ReadWritePaths = writablePaths;
                };
              };

              systemd.timers.ccci-janitor = {
                description = "Run the ccci janitor";
                wantedBy = [ "timers.target" ];
                timerConfig = {
                  OnCalendar = cfg.interval;
                  Persistent = true;
                  AccuracySec = "5s";
                };
              };
            })

            (lib.mkIf serveCfg.enable {
              assertions = [
                {
                  assertion = lib.all (lib.hasPrefix "/") (
                    [ serveCfg.forgeTokenFile ] ++ serveCfg.webhookSecretFiles
                  );
                  message = "services.ccci.serve.forgeTokenFile and webhookSecretFiles must be absolute paths.";
                }
              ];
              warnings = lib.optional (!cfg.enable) (
                "services.ccci.serve is enabled without services.ccci.janitor: nothing reaps the "
                + "apps of runs that were killed (SIGKILL, a crash, a power cut)."
              );

              environment.systemPackages = [ serveCfg.package ];

              systemd.tmpfiles.rules = lib.optional (
                serveCfg.settings ? state_dir
              ) "d ${serveCfg.settings.state_dir} 0755 root root -";

              systemd.services.ccci-serve = {
                description = "ccci serve: test Co-op Cloud recipe pull requests on request";
                documentation = [ "man:ccci(1)" ];
                wantedBy = [ "multi-user.target" ];
                wants = [
                  "docker.service"
                  "network-online.target"
                ];
                after = [
                  "docker.service"
                  "network-online.target"
                ];
                # The bundled recipes' tests are bash scripts that use curl.
                path = [
                  pkgs.docker-client
                  pkgs.git
                  pkgs.bash
                  pkgs.curl
                ]
                ++ serveCfg.extraPackages;
                environment = {
                  CCCI_CONFIG = "/etc/ccci/config.yml";
                  ABRA_DIR = cfg.settings.abra_dir;
                };
                # A restart stops the runs under way; each tears its app down.
                restartTriggers = [ configFile ];
                serviceConfig = hardening // {
                  Type = "exec";
                  ExecStart = "${lib.getExe serveCfg.package} serve";
                  Restart = "on-failure";
                  RestartSec = "5s";
                  LoadCredential = [
                    "forge-token:${serveCfg.forgeTokenFile}"
                  ]
                  ++ lib.imap0 (i: file: "${webhookCredential i}:${file}") serveCfg.webhookSecretFiles;
                  # SIGTERM goes to serve alone; it stops its runs (each `ccci test` ends its own
                  # children and tears its app down) and exits 0 once they are done. What is
                  # left after that, or after TimeoutStopSec, is SIGKILLed.
                  KillMode = "mixed";
                  # Room for every run's teardown (teardown_budget, default 3m).
                  TimeoutStopSec = "5min";
                  ReadWritePaths =
                    writablePaths
                    ++ lib.optional (serveCfg.settings ? state_dir) serveCfg.settings.state_dir;
                };
              };
            })
          ];
        };
    };
}
