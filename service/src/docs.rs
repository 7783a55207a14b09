//! Shell completions and man pages, made from a daemon's clap definitions
//! so they always match its flags: `NAME completions bash|zsh|fish` and
//! `NAME man [--out-dir DIR]` print what a package installs beside the
//! binary (`scripts/package` runs them on the binary it packages), and what
//! someone who built the binary can install by hand.
//!
//! They are ordinary subcommands, listed in `--help`: `clap_complete`'s
//! scripts offer hidden subcommands all the same, so hiding them would only
//! make `--help` disagree with the completions.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use clap_complete::Shell;

use crate::exit::{self, Failure};

/// The subcommands that print a daemon's completions and man pages.
/// A binary flattens them into its own subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Docs {
    /// Print the shell completion script for SHELL (bash, zsh, fish,
    /// elvish or powershell) to stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) to stdout, or write it and one page per
    /// subcommand into a directory.
    Man {
        /// Write NAME.1 and NAME-SUBCOMMAND.1 for each subcommand into this
        /// existing directory instead of printing NAME.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

impl Docs {
    /// Prints (or writes) what was asked for about `command`, the
    /// binary's whole command line
    /// ([`CommandLine::command_for`](crate::cli::CommandLine::command_for)).
    /// A failed write exits 1.
    pub fn run(&self, command: clap::Command) -> ExitCode {
        exit::code(self.write(command, &mut io::stdout().lock()))
    }

    fn write(&self, mut command: clap::Command, out: &mut dyn io::Write) -> Result<(), Failure> {
        match self {
            Self::Completions { shell } => {
                let name = command.get_name().to_owned();
                // clap_complete panics when its writer fails: it writes
                // into memory, and a closed stdout becomes an error here.
                let mut script = Vec::new();
                clap_complete::generate(*shell, &mut command, name, &mut script);
                out.write_all(&script)
                    .and_then(|()| out.flush())
                    .map_err(|e| Failure::runtime(format!("cannot write the completions: {e}")))
            }
            Self::Man { out_dir: None } => clap_mangen::Man::new(command)
                .render(out)
                .and_then(|()| out.flush())
                .map_err(|e| Failure::runtime(format!("cannot write the man page: {e}"))),
            Self::Man { out_dir: Some(dir) } => write_man_pages(command, dir),
        }
    }
}

/// Writes the man page of `command` and of each visible subcommand into
/// `dir`.
fn write_man_pages(command: clap::Command, dir: &Path) -> Result<(), Failure> {
    clap_mangen::generate_to(command, dir)
        .map_err(|e| Failure::runtime(format!("cannot write man pages to {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser};

    /// A daemon with one tool and the docs subcommands flattened in.
    #[derive(Debug, Parser)]
    #[command(name = "d", version = "1.0")]
    struct Cli {
        /// Where to listen.
        #[arg(long)]
        listen: Option<String>,
        #[command(subcommand)]
        command: Option<Tool>,
    }

    #[derive(Debug, Subcommand)]
    enum Tool {
        /// Check something.
        Check,
        #[command(flatten)]
        Docs(Docs),
    }

    fn output(args: &[&str]) -> String {
        let Some(Tool::Docs(docs)) = Cli::try_parse_from(args).expect("valid").command else {
            panic!("not a docs subcommand: {args:?}");
        };
        let mut out = Vec::new();
        docs.write(Cli::command(), &mut out).expect("written");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn completions_cover_the_flags_and_subcommands() {
        let bash = output(&["d", "completions", "bash"]);
        assert!(bash.contains("complete -F _d"), "{bash}");
        assert!(bash.contains("--listen") && bash.contains("check completions man"));
        let zsh = output(&["d", "completions", "zsh"]);
        assert!(
            zsh.starts_with("#compdef d") && zsh.contains("--listen"),
            "{zsh}"
        );
        let fish = output(&["d", "completions", "fish"]);
        assert!(
            fish.contains("complete -c d ") && fish.contains("-l listen"),
            "{fish}"
        );
        assert!(Cli::try_parse_from(["d", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn the_man_page_documents_the_flags() {
        let page = output(&["d", "man"]);
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH d 1"), "{page}");
        assert!(page.contains("Where to listen"));
        assert!(page.contains("d\\-check(1)"), "{page}");
    }

    #[test]
    fn out_dir_gets_one_page_per_command() {
        let dir = std::env::temp_dir().join(format!("sixpath-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let dir_arg = dir.to_str().expect("UTF-8 path");
        let printed = output(&["d", "man", "--out-dir", dir_arg]);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("listed")
            .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
            .collect();
        names.sort();
        std::fs::remove_dir_all(&dir).expect("removed");
        assert_eq!(names, ["d-check.1", "d-completions.1", "d-man.1", "d.1"]);
        assert_eq!(printed, "");
    }
}
