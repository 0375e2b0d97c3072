# frozen_string_literal: true

require_relative 'lib/polyphony/version'

Gem::Specification.new do |s|
  s.name        = 'polyphony'
  s.version     = Polyphony::VERSION
  s.licenses    = ['MIT']
  s.summary     = 'Fine-grained structured concurrency for Ruby, on a Rust io_uring/epoll core'
  s.description = 'Spin fibers, await them, supervise them; a native Rust backend per thread ' \
                  'runs them on io_uring (or epoll where io_uring is unavailable).'
  s.authors     = ['polyphony developers']
  s.required_ruby_version = '>= 3.1'
  s.required_rubygems_version = '>= 3.3'
  s.platform = Gem::Platform::RUBY
  # Linux only: the backend is io_uring or epoll. Building needs cargo and
  # libclang (bindgen); see README.md.
  s.requirements = ['Linux', 'Rust toolchain (cargo) and libclang to build the native extension']
  # Never a glob of ext/**/*.rs: it would pick up generated bindings under
  # target/.
  s.files = Dir['lib/**/*.rb'] +
            Dir['ext/*/src/**/*.rs'] +
            Dir['docs/*.md'] +
            %w[Cargo.toml Cargo.lock ext/polyphony/Cargo.toml ext/polyphony/extconf.rb README.md LICENSE]
  s.bindir = 'exe'
  s.executables = ['polyphony-http']
  s.files += ['exe/polyphony-http']
  s.extensions = ['ext/polyphony/extconf.rb']
  s.require_paths = ['lib']
  s.metadata['rubygems_mfa_required'] = 'true'
end
