# frozen_string_literal: true

# Writes a Makefile that builds the Rust crate with cargo (no rb_sys gem
# needed). RubyGems runs: ruby extconf.rb; make clean; make; make install.
require 'rbconfig'

here = __dir__
ruby = File.join(RbConfig::CONFIG['bindir'], RbConfig::CONFIG['ruby_install_name'])
cargo = ENV.fetch('CARGO', 'cargo')
locked = File.exist?(File.join(here, '..', '..', 'Cargo.lock')) ? '--locked' : ''

File.write(File.join(here, 'Makefile'), <<~MAKE)
  CARGO_TARGET_DIR = #{here}/target
  SO = polyphony_ext.so
  sitearchdir ?= #{RbConfig::CONFIG['sitearchdir']}

  all: $(SO)

  $(SO):
  \tRUBY=#{ruby} CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) #{cargo} build --release #{locked} --manifest-path #{here}/Cargo.toml
  \tcp $(CARGO_TARGET_DIR)/release/libpolyphony_ext.so $(SO)

  install: $(SO)
  \tmkdir -p $(sitearchdir)/polyphony
  \tcp $(SO) $(sitearchdir)/polyphony/$(SO)
  \trm -rf $(CARGO_TARGET_DIR)

  clean:
  \trm -f $(SO)

  .PHONY: all install clean
MAKE
