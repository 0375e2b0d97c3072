# frozen_string_literal: true

# Writes a Makefile that builds the Rust crate with cargo (no rb_sys gem
# needed). RubyGems runs: ruby extconf.rb; make clean; make; make install.
#
# - `make` rebuilds `polyphony_ext.so` when a Rust source, a Cargo.toml or
#   Cargo.lock changed, and only then (cargo decides what to recompile).
# - The cargo target folder is the workspace's own (`target/` at the
#   repository root, the one `rake compile` uses): one build cache.
# - `make install` copies the library to `$(sitearchdir)/polyphony/`. In a
#   RubyGems build (sitearchdir is RubyGems' staging folder) it then removes
#   the cargo target folder, ~140 MB that the installed gem never uses.
require 'rbconfig'

here = __dir__
root = File.expand_path('../..', here)
ruby = File.join(RbConfig::CONFIG['bindir'], RbConfig::CONFIG['ruby_install_name'])
cargo = ENV.fetch('CARGO', 'cargo')
locked = File.exist?(File.join(root, 'Cargo.lock')) ? '--locked' : ''
sitearchdir = RbConfig::CONFIG['sitearchdir']
gem_build = sitearchdir.start_with?('.gem.') || sitearchdir.include?('/.gem.')
sources = Dir[File.join(here, 'src', '**', '*.rs')] +
          [File.join(here, 'Cargo.toml'), File.join(root, 'Cargo.toml'), File.join(root, 'Cargo.lock')]
sources.select! { |f| File.exist?(f) }

File.write(File.join(here, 'Makefile'), <<~MAKE)
  CARGO_TARGET_DIR = #{root}/target
  SO = polyphony_ext.so
  sitearchdir ?= #{sitearchdir}
  SOURCES = #{sources.join(" \\\n\t")}

  all: $(SO)

  $(SO): $(SOURCES)
  \tRUBY=#{ruby} CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) #{cargo} build --release #{locked} --manifest-path #{here}/Cargo.toml
  \tcp $(CARGO_TARGET_DIR)/release/libpolyphony_ext.so $(SO).tmp
  \tmv $(SO).tmp $(SO)

  install: $(SO)
  \tmkdir -p $(sitearchdir)/polyphony
  \tcp $(SO) $(sitearchdir)/polyphony/$(SO)
  #{gem_build ? "\trm -rf $(CARGO_TARGET_DIR)" : ''}

  clean:
  \trm -f $(SO) $(SO).tmp

  .PHONY: all install clean
MAKE
