//! Rust values owned by Ruby objects (typed `T_DATA`), and [`Handle`]s to
//! them. The classes and their mark functions are declared by the bindings
//! (`ruby_api/`, with [`typed_data!`]); `core/` makes and finds its wrapped
//! values through [`wrap`] and [`get`] only.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use magnus::{value::ReprValue, TypedData};
use rb_sys::VALUE;

use super::{raw, ruby};

/// A borrowed Rust value inside a live Ruby object. The handle holds the
/// object, so the value lives at least as long as the handle: Ruby scans
/// every thread's and fiber's stack conservatively, and `Drop` keeps the
/// `VALUE` in memory until then (`rb_gc_guard!`). This is what replaces a
/// `&'static` to a garbage-collected object.
pub struct Handle<T> {
    obj: VALUE,
    ptr: NonNull<T>,
    _not_send: PhantomData<*const T>,
}

impl<T> Handle<T> {
    /// A handle to `ptr`, the value inside `obj`, from a previous
    /// [`get`] (`handle.value()` and `&*handle`).
    ///
    /// # Safety
    /// `obj` must be alive and `ptr` the address of its `T`.
    #[inline]
    pub unsafe fn from_parts(obj: VALUE, ptr: *const T) -> Handle<T> {
        Handle {
            obj,
            // SAFETY: the caller passes the address of a live value.
            ptr: unsafe { NonNull::new_unchecked(ptr as *mut T) },
            _not_send: PhantomData,
        }
    }

    /// The Ruby object that owns the value.
    #[inline]
    pub fn value(&self) -> VALUE {
        self.obj
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            obj: self.obj,
            ptr: self.ptr,
            _not_send: PhantomData,
        }
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into the data of `obj`, which this handle
        // keeps alive (see the type's doc); typed data never moves.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for Handle<T> {
    #[inline]
    fn drop(&mut self) {
        rb_sys::rb_gc_guard!(self.obj);
    }
}

/// Wraps `value` in a new object of `T`'s class; returns the object.
pub fn wrap<T: TypedData>(value: T) -> VALUE {
    raw(ruby().obj_wrap(value).as_value())
}

/// The `T` inside `obj`, if `obj` is a `T` object.
///
/// The type test is the one `rb_check_typeddata` makes, done here without
/// raising, so without the `rb_protect` a conversion through magnus costs
/// on every native method call.
#[inline]
pub fn get<T: TypedData>(obj: VALUE) -> Option<Handle<T>> {
    use rb_sys::ruby_value_type::RUBY_T_DATA;
    if rb_sys::SPECIAL_CONST_P(obj) {
        return None;
    }
    // `DataType` is a `repr(transparent)` `rb_data_type_t`.
    let want = T::data_type() as *const magnus::DataType as *const rb_sys::rb_data_type_t;
    // SAFETY: GVL held; `obj` is a live heap object (not a special
    // constant), so its type can be read, and the typed-data fields only
    // once it is known to be typed data.
    unsafe {
        if rb_sys::RB_BUILTIN_TYPE(obj) != RUBY_T_DATA || !rb_sys::RTYPEDDATA_P(obj) {
            return None;
        }
        let ty = rb_sys::RTYPEDDATA_TYPE(obj);
        if ty != want && rb_sys::rb_typeddata_inherited_p(ty, want) == 0 {
            return None;
        }
        // magnus wraps a `Box<T>`: the data pointer is the `T`.
        let ptr = rb_sys::RTYPEDDATA_GET_DATA(obj) as *const T;
        if ptr.is_null() {
            return None;
        }
        Some(Handle::from_parts(obj, ptr))
    }
}

/// Declares the Ruby class of a Rust type (a `magnus::TypedData` impl):
/// `typed_data!(Type, "Ruby::Class", mark)` marks with `Type::mark(&self,
/// &mut dyn FnMut(VALUE))`; without `mark` the type holds no Ruby object.
/// Instances are freed as soon as they are unreachable (`free_immediately`:
/// `Drop` must not call Ruby).
macro_rules! typed_data {
    ($ty:ty, $class:literal $(, $mark:ident)?) => {
        // SAFETY: the data type below describes `$ty` exactly (magnus
        // builds it from the type), and `class` is the class made for it.
        unsafe impl magnus::TypedData for $ty {
            fn class(ruby: &magnus::Ruby) -> magnus::RClass {
                use magnus::{value::Lazy, Class, RClass};
                static CLASS: Lazy<RClass> = Lazy::new(|ruby| {
                    let class: RClass = ruby
                        .class_object()
                        .funcall("const_get", ($class,))
                        .expect(concat!($class, " is defined at init"));
                    class.undef_default_alloc_func();
                    class
                });
                ruby.get_inner(&CLASS)
            }

            fn data_type() -> &'static magnus::DataType {
                static DATA_TYPE: magnus::DataType =
                    magnus::typed_data::DataTypeBuilder::<$ty>::new(
                        match std::ffi::CStr::from_bytes_with_nul(concat!($class, "\0").as_bytes()) {
                            Ok(name) => name,
                            Err(_) => panic!("class name"),
                        },
                    )
                        $(.$mark())?
                        .size()
                        .free_immediately()
                        .build();
                &DATA_TYPE
            }
        }

        impl magnus::DataTypeFunctions for $ty {
            $(
            fn $mark(&self, marker: &magnus::gc::Marker) {
                <$ty>::mark(self, &mut |v| marker.mark($crate::rt::val(v)));
            }
            )?
        }
    };
}
pub(crate) use typed_data;
