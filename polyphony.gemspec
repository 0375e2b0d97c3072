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
  s.homepage    = 'https://example.invalid/polyphony'
  s.required_ruby_version = '>= 3.1'
  s.files = Dir['lib/**/*.rb'] +
            Dir['ext/*/src/**/*.rs'] +
            %w[Cargo.toml Cargo.lock ext/polyphony/Cargo.toml ext/polyphony/extconf.rb README.md]
  s.extensions = ['ext/polyphony/extconf.rb']
  s.require_paths = ['lib']
  s.metadata['rubygems_mfa_required'] = 'true'
end
