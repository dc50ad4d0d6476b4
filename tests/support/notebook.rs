//! Runs a Jupyter notebook headless: `python3 -c RUNNER <notebook> <out dir>`
//! executes every cell on the `python3` kernel (nbclient), writes the
//! executed notebook to `<out dir>/executed.ipynb`, and exits 1 on the first
//! failing cell or any error output. Used by tests/flight_notebook.rs and
//! tests/python.rs.

pub const RUNNER: &str = r#"
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": out}})
try:
    client.execute()
except CellExecutionError as e:
    print(e)
    sys.exit(1)
finally:
    nbformat.write(nb, out + "/executed.ipynb")
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
if errors:
    print(errors)
    sys.exit(1)
print("executed", sum(1 for c in nb.cells if c.cell_type == "code"), "code cells")
"#;
