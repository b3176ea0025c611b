//! Shared dependencies handlers ask for by type: [`State<T>`] (the handler
//! parameter), [`StateMap`] (what an app or a test harness holds) and
//! [`StateType`] (a type a consumer needs, checked before anything connects).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::context::Context;
use super::handler::HandlerError;

/// A shared dependency (a database pool, an HTTP client, settings) given to
/// the app once with [`App::state`](crate::App::state) and taken by a
/// handler as a parameter:
///
/// ```
/// #[derive(Clone)]
/// struct Deps { greeting: String }
/// # #[derive(serde::Deserialize)] struct OrderEvent { order_id: String }
///
/// #[mqkit::consumer(queue = "order")]
/// async fn on_order(evt: OrderEvent, mqkit::State(deps): mqkit::State<Deps>) -> Result<(), mqkit::HandlerError> {
///     println!("{} {}", deps.greeting, evt.order_id);
///     Ok(())
/// }
/// ```
///
/// Each handler call gets its own clone, so `T` is usually an `Arc` or a
/// handle that is cheap to clone (sqlx pools, reqwest clients are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State<T>(pub T);

/// A type of shared state a consumer needs (one per `State<T>` parameter).
#[derive(Clone, Copy)]
pub struct StateType {
    id: TypeId,
    name: &'static str,
}

impl StateType {
    /// The state type `T`.
    pub fn of<T: Clone + Send + Sync + 'static>() -> Self {
        StateType {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }

    /// The type's name, as `std::any::type_name` writes it.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl PartialEq for StateType {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for StateType {}

impl fmt::Debug for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Values by type, shared by every delivery of an app.
#[derive(Clone, Default)]
pub(crate) struct StateMap {
    values: HashMap<TypeId, (&'static str, Arc<dyn Any + Send + Sync>)>,
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.values.values().map(|(name, _)| *name).collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}

impl StateMap {
    /// Stores `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(
            TypeId::of::<T>(),
            (std::any::type_name::<T>(), Arc::new(value)),
        );
    }

    /// A clone of the value of type `T`.
    pub(crate) fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<T>())
            .cloned()
    }

    /// Whether a value of this type is stored.
    pub(crate) fn contains(&self, ty: StateType) -> bool {
        self.values.contains_key(&ty.id)
    }
}

/// A handler parameter filled from the delivery's [`Context`]: what the
/// code `#[mqkit::consumer]` generates calls for each `State<T>` parameter.
/// Not a stable API.
#[doc(hidden)]
pub trait FromContext: Sized {
    /// The state type this parameter needs, checked at startup.
    fn state_type() -> StateType;

    /// The parameter for one delivery.
    fn from_context(ctx: &Context) -> Result<Self, HandlerError>;
}

impl<T: Clone + Send + Sync + 'static> FromContext for State<T> {
    fn state_type() -> StateType {
        StateType::of::<T>()
    }

    fn from_context(ctx: &Context) -> Result<Self, HandlerError> {
        // Startup refuses a consumer whose state is missing, so this fails
        // only for a hand-written Consumer that did not list it.
        ctx.state::<T>().map(State).ok_or_else(|| {
            HandlerError::reject(format!(
                "no state of type {} was given to the app: add .state(value) to the App, and list the type in Consumer::state_types",
                std::any::type_name::<T>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Db(u32);

    #[test]
    fn stores_one_value_per_type() {
        let mut map = StateMap::default();
        assert!(!map.contains(StateType::of::<Db>()));
        map.insert(Db(1));
        map.insert(Db(2));
        map.insert(String::from("x"));
        assert_eq!(map.get::<Db>(), Some(Db(2)));
        assert_eq!(map.get::<u8>(), None);
        assert!(map.contains(StateType::of::<Db>()));
        assert_eq!(StateType::of::<Db>().name(), std::any::type_name::<Db>());
    }
}
