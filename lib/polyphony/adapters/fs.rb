# frozen_string_literal: true

# `require 'polyphony/adapters/fs'`: `File.stat(path)` and `IO.read(path)`
# (its one-argument form) run on the default ThreadPool, so a slow file
# system (NFS, a spinning disk) blocks only the calling fiber.
require 'polyphony'

module Polyphony
  # Prepended to `File.singleton_class`.
  module FileStatOnPool
    def stat(path)
      Polyphony::ThreadPool.process { super }
    end
  end

  # Prepended to `IO.singleton_class`.
  module IOReadOnPool
    def read(*args, **opts)
      return super unless args.size == 1 && opts.empty?

      path = args.first
      Polyphony::ThreadPool.process { ::IO.orig_read(path) }
    end
  end
end

::File.singleton_class.prepend(Polyphony::FileStatOnPool)
::IO.singleton_class.prepend(Polyphony::IOReadOnPool)
