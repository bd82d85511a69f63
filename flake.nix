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

      # The janitor as a systemd oneshot started by a timer, the lock directory on tmpfs, and
      # the host's ccci configuration in /etc/ccci/config.yml.
      nixosModules.default =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        let
          cfg = config.services.ccci.janitor;
          settingsFormat = pkgs.formats.yaml { };
          configFile = settingsFormat.generate "ccci-config.yml" cfg.settings;
        in
        {
          options.services.ccci.janitor = {
            enable = lib.mkEnableOption "the ccci janitor, which reaps test apps that belong to no live run";

            package = lib.mkOption {
              type = lib.types.package;
              default = self.packages.${pkgs.stdenv.hostPlatform.system}.ccci;
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
                ccci's configuration, written to /etc/ccci/config.yml as YAML. Keys are those of
                ccci's config file (runs_dir, lock_dir, abra_dir, server, domain_zone,
                leak_threshold, warm_apps, ...); durations are written like "90s", "15m", "2h".
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

          config = lib.mkIf cfg.enable {
            environment.systemPackages = [ cfg.package ];

            environment.etc."ccci/config.yml".source = configFile;

            # Runs started by hand on this host must use the same lock directory as the janitor,
            # or the janitor cannot see that they are live.
            environment.variables.CCCI_CONFIG = "/etc/ccci/config.yml";

            # Not a RuntimeDirectory= of the service: systemd would delete it, with the locks of
            # live runs in it, every time the oneshot finished.
            systemd.tmpfiles.rules = [
              "d /run/ccci 0755 root root -"
              "d ${cfg.settings.lock_dir} 0755 root root -"
            ];

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
              serviceConfig = {
                Type = "oneshot";
                ExecStart = "${lib.getExe cfg.package} janitor";
                # A reap removes stacks, volumes, secrets and configs; let a slow engine finish.
                TimeoutStartSec = "30min";
                Nice = 5;

                # Hardening: the engine is reached through /run/docker.sock (connecting to a
                # socket works on a read-only mount); the abra home, the lock directory and the
                # runs directory are the only places written.
                ProtectSystem = "strict";
                ProtectHome = "read-only";
                ReadWritePaths = [
                  "-${cfg.settings.abra_dir}"
                  "-${cfg.settings.lock_dir}"
                  "-${cfg.settings.runs_dir}"
                ];
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
          };
        };
    };
}
