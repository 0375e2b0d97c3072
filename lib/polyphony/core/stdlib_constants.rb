# frozen_string_literal: true

# The stdlib synchronisation classes replaced by `require 'polyphony'`.
# Objects created before the require keep their class;
# SizedQueue and ClosedQueueError stay stdlib.
module Polyphony
  REPLACED_CONSTANTS = {
    Object => { Queue: Polyphony::Queue, Mutex: Polyphony::Mutex,
                ConditionVariable: Polyphony::ConditionVariable, Monitor: Polyphony::Monitor },
    Thread => { Queue: Polyphony::Queue, Mutex: Polyphony::Mutex,
                ConditionVariable: Polyphony::ConditionVariable }
  }.freeze

  class << self
    def __replace_stdlib_constants__
      verbose = $VERBOSE
      $VERBOSE = nil
      REPLACED_CONSTANTS.each do |owner, consts|
        consts.each { |name, klass| owner.const_set(name, klass) }
      end
    ensure
      $VERBOSE = verbose
    end
  end
end
