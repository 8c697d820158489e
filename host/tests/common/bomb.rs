//! Table bombs: a real plugin component with a core module of many large `funcref` tables
//! appended at its top level, and core instances of that module. Instantiating the
//! component (which every call does) instantiates each of them, so a call asks for
//! instances × tables × elements table entries before any plugin code runs.

use std::borrow::Cow;

use wasm_encoder::{
    CodeSection, ComponentSectionId, ElementSection, Elements, Encode as _, Function, FunctionSection, InstanceSection,
    MemorySection, MemoryType, Module, ModuleArg, ModuleSection, RefType, StartSection, TableSection, TableType,
    TypeSection,
};
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// What a bomb appends.
#[derive(Debug, Clone, Copy)]
pub struct Bomb {
    /// Core instances of the bomb module.
    pub instances: u32,
    /// Tables the module declares (wasmparser allows at most 100).
    pub tables: u32,
    /// Initial elements of each table (wasmparser allows at most 10,000,000).
    pub elements: u32,
    /// Initial pages (64 KiB) of one linear memory the module declares; 0 for none.
    pub memory_pages: u32,
    /// Whether the module's start function fills every table with a function reference,
    /// so that the entries are written (resident), not only reserved.
    pub fill: bool,
}

impl Bomb {
    /// `instances` × `tables` × `elements`, no memory, tables not filled.
    pub const fn tables(instances: u32, tables: u32, elements: u32) -> Bomb {
        Bomb { instances, tables, elements, memory_pages: 0, fill: false }
    }

    /// The table entries one instantiation of the bombed component asks for.
    pub fn entries(&self) -> u64 {
        u64::from(self.instances) * u64::from(self.tables) * u64::from(self.elements)
    }

    /// The bytes those entries take at 8 bytes each.
    pub fn table_bytes(&self) -> u64 {
        self.entries() * 8
    }
}

/// The core module: `tables` tables of `elements` funcref elements each, a memory of
/// `memory_pages` pages if any, no imports, and (with `fill`) a start function filling
/// each table with a reference to itself.
fn module(bomb: &Bomb) -> Module {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    let mut tables = TableSection::new();
    for _ in 0..bomb.tables {
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: u64::from(bomb.elements),
            maximum: None,
            shared: false,
        });
    }
    let mut module = Module::new();
    module.section(&types);
    if bomb.fill {
        functions.function(0);
        module.section(&functions);
    }
    module.section(&tables);
    if bomb.memory_pages > 0 {
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: u64::from(bomb.memory_pages),
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
    }
    if bomb.fill {
        module.section(&StartSection { function_index: 0 });
        // `ref.func 0` in a body needs function 0 declared by an element segment.
        let mut elements = ElementSection::new();
        elements.declared(Elements::Functions(Cow::Borrowed(&[0])));
        module.section(&elements);
        let mut body = Function::new([]);
        let mut code = body.instructions();
        for table in 0..bomb.tables {
            let length = i32::try_from(bomb.elements).expect("at most 10,000,000 elements");
            code.i32_const(0).ref_func(0).i32_const(length).table_fill(table);
        }
        code.end();
        let mut section = CodeSection::new();
        section.function(&body);
        module.section(&section);
    }
    module
}

/// How many core modules the top level of `component` defines, imports or aliases: the
/// index the next one gets.
pub fn top_level_core_modules(component: &[u8]) -> u32 {
    let mut depth = 0usize;
    let mut count = 0u32;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.expect("the component parses");
        match payload {
            Payload::ModuleSection { .. } => {
                if depth == 0 {
                    count += 1;
                }
                depth += 1;
            }
            Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    if matches!(import.expect("an import").ty, wasmparser::ComponentTypeRef::Module(_)) {
                        count += 1;
                    }
                }
            }
            Payload::ComponentAliasSection(aliases) if depth == 0 => {
                for alias in aliases {
                    let kind = match alias.expect("an alias") {
                        wasmparser::ComponentAlias::InstanceExport { kind, .. } => {
                            kind == wasmparser::ComponentExternalKind::Module
                        }
                        wasmparser::ComponentAlias::Outer { kind, .. } => {
                            kind == wasmparser::ComponentOuterAliasKind::CoreModule
                        }
                        wasmparser::ComponentAlias::CoreInstanceExport { .. } => false,
                    };
                    if kind {
                        count += 1;
                    }
                }
            }
            _ => {}
        }
    }
    count
}

/// Validates `bytes` as a component.
pub fn validate(bytes: &[u8]) {
    Validator::new_with_features(WasmFeatures::default() | WasmFeatures::COMPONENT_MODEL)
        .validate_all(bytes)
        .unwrap_or_else(|e| panic!("the bombed component does not validate: {e}"));
}

/// `component` with the bomb module appended to its top level and `bomb.instances` core
/// instance sections instantiating it (with no imports).
pub fn table_bomb(component: &[u8], bomb: &Bomb) -> Vec<u8> {
    append_module(component, &module(bomb), bomb.instances)
}

/// `component` with `module` appended to its top level and `instances` core instance
/// sections instantiating it (with no imports), validated before and after.
fn append_module(component: &[u8], module: &Module, instances: u32) -> Vec<u8> {
    validate(component);
    let index = top_level_core_modules(component);
    let mut bytes = component.to_vec();
    bytes.push(ComponentSectionId::CoreModule.into());
    ModuleSection(module).encode(&mut bytes);
    for _ in 0..instances {
        let mut section = InstanceSection::new();
        section.instantiate(index, std::iter::empty::<(&str, ModuleArg)>());
        bytes.push(ComponentSectionId::CoreInstance.into());
        section.encode(&mut bytes);
    }
    validate(&bytes);
    bytes
}

/// [`table_bomb`] of the test plugin `name`, written to `dir/FILE` (returned).
pub fn write(dir: &std::path::Path, file: &str, name: &str, bomb: &Bomb) -> std::path::PathBuf {
    let component = std::fs::read(super::plugin(name)).unwrap_or_else(|e| panic!("read test plugin {name}: {e}"));
    let path = dir.join(file);
    std::fs::write(&path, table_bomb(&component, bomb)).expect("write the bomb");
    path
}

/// `component` with a core module appended (and instantiated) whose one function ends in
/// a tail call (`return_call`): valid WebAssembly that Cranelift compiles and Winch does
/// not.
pub fn with_tail_call(component: &[u8]) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([]);
    body.instructions().return_call(0).end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    append_module(component, &module, 1)
}
