"""What `lakehouse sql` may run: read-only queries over silver.* and gold.*, decided on Spark's plans.

A keyword list over the SQL text is easy to dodge (a comment, a CTE in front of an INSERT, a
``TRANSFORM ... USING``); Spark's own parser is not. :func:`check_parsed` walks the parsed logical
plan - every node, its inner children (CTE definitions, subqueries) and the subqueries inside its
expressions - and accepts only

* query operators from an allow-list (a node Spark adds in a later version is refused until it is
  listed: refusing a harmless query costs a user a moment, running a write would void the budget);
* the read-only commands SHOW / DESCRIBE / EXPLAIN (the plan under EXPLAIN is checked as well);
* tables named ``silver.<table>`` / ``gold.<table>`` (or a CTE's name): a path such as
  ``text.`/etc/hostname``` or ``delta.`/any/path``` is a direct file read and is refused;
* functions other than the reflection ones, which call arbitrary Java methods (and no function
  named at run time, ``IDENTIFIER('java_method')(...)``).

:func:`check_analyzed` then checks the analysed plan of a query: every relation it reads is one of
the registered tables' locations, and no expression calls Java by reflection, however it was
named. Refusals raise :class:`SqlRefused` before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lakehouse.errors import LakehouseError

LAYERS = ("silver", "gold")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Query operators of the parsed (and a few of the analysed) plan.
QUERY_NODES = frozenset({
    "Project", "Filter", "Join", "LateralJoin", "SubqueryAlias", "UnresolvedWith", "OneRowRelation",
    "LocalRelation", "UnresolvedInlineTable", "GlobalLimit", "LocalLimit", "Offset", "Tail", "Sort",
    "Aggregate", "UnresolvedHaving", "Union", "Except", "Intersect", "Distinct", "Deduplicate",
    "UnresolvedHint", "Sample", "Generate", "Pivot", "Unpivot", "RepartitionByExpression", "Repartition",
    "WithWindowDefinition", "Window", "UnresolvedSubqueryColumnAliases", "PipeOperator", "Expand",
    "UnresolvedTVFAliases", "CTERelationRef", "CTERelationDef", "WithCTE", "Range", "Subquery",
})
# Read-only commands; their operands are the reference leaves below.
READ_COMMANDS = frozenset({
    "ShowTables", "ShowTablesExtended", "ShowViews", "ShowNamespaces", "ShowNamespacesCommand", "ShowColumns",
    "ShowTableProperties", "ShowCreateTable", "ShowPartitions", "DescribeRelation", "DescribeColumn",
    "DescribeNamespace", "DescribeFunction", "ShowFunctions", "DescribeDeltaHistory", "DescribeDeltaDetailCommand",
    "ShowCurrentNamespaceCommand", "ExplainCommand",
})
REFERENCE_LEAVES = frozenset({"UnresolvedTable", "UnresolvedTableOrView", "UnresolvedView", "UnresolvedNamespace",
                              "UnresolvedFunctionName", "CurrentNamespace$"})
TABLE_FUNCTIONS = frozenset({"range", "explode", "explode_outer", "inline", "inline_outer", "posexplode",
                             "posexplode_outer", "json_tuple", "stack"})
FORBIDDEN_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})  # call any static Java method
# The same, resolved (a name Spark only learns at analysis - IDENTIFIER('java_method')(...) - ends here).
FORBIDDEN_EXPRESSIONS = frozenset({"CallMethodViaReflection", "TryReflect"})
# Expressions that hold a plan of their own (also listed as inner children; walked either way).
SUBQUERY_EXPRESSIONS = frozenset({"ScalarSubquery", "Exists", "ListQuery", "LateralSubquery",
                                  "FunctionTableSubqueryArgumentExpression"})
# Leaves of an analysed query plan that read no file.
ANALYZED_LEAVES = frozenset({"LocalRelation", "OneRowRelation", "Range", "CTERelationRef"})

# What a refused node does, in the words of the SQL that made it.
STATEMENTS = {
    "InsertIntoStatement": "INSERT", "InsertIntoDir": "INSERT OVERWRITE DIRECTORY", "DeleteFromTable": "DELETE",
    "UpdateTable": "UPDATE", "MergeIntoTable": "MERGE", "TruncateTable": "TRUNCATE TABLE",
    "TruncatePartition": "TRUNCATE TABLE", "CacheTable": "CACHE TABLE", "CacheTableAsSelect": "CACHE TABLE",
    "UncacheTable": "UNCACHE TABLE", "ClearCacheCommand$": "CLEAR CACHE", "SetCommand": "SET",
    "ResetCommand": "RESET", "SetNamespaceCommand": "SET", "CreateTable": "CREATE TABLE",
    "CreateTableAsSelect": "CREATE TABLE AS SELECT", "ReplaceTable": "REPLACE TABLE",
    "ReplaceTableAsSelect": "REPLACE TABLE", "CreateViewCommand": "CREATE VIEW", "CreateView": "CREATE VIEW",
    "CreateFunction": "CREATE FUNCTION", "CreateNamespace": "CREATE DATABASE", "DropTable": "DROP TABLE",
    "DropView": "DROP VIEW", "DropNamespace": "DROP DATABASE", "DropFunction": "DROP FUNCTION",
    "SetTableProperties": "ALTER TABLE", "UnsetTableProperties": "ALTER TABLE", "AddColumns": "ALTER TABLE",
    "DropColumns": "ALTER TABLE", "RenameColumn": "ALTER TABLE", "AlterColumn": "ALTER TABLE",
    "RenameTable": "ALTER TABLE", "ReplaceColumns": "ALTER TABLE", "SetTableLocation": "ALTER TABLE",
    "ScriptTransformation": "TRANSFORM ... USING (runs a program)", "VacuumTableCommand": "VACUUM",
    "OptimizeTableCommand": "OPTIMIZE", "RestoreTableStatement": "RESTORE", "ConvertToDeltaCommand": "CONVERT TO DELTA",
    "AddJarsCommand": "ADD JAR", "AddFilesCommand": "ADD FILE", "AddArchivesCommand": "ADD ARCHIVE",
    "RefreshTable": "REFRESH TABLE", "RefreshResource": "REFRESH", "RepairTable": "MSCK REPAIR TABLE",
    "SetCatalogAndNamespace": "USE", "CreateVariable": "DECLARE", "DropVariable": "DROP VARIABLE",
    "SetVariable": "SET VARIABLE", "UnresolvedExecuteImmediate": "EXECUTE IMMEDIATE", "Call": "CALL",
    "PlanWithUnresolvedIdentifier": "IDENTIFIER(...) with a computed name", "CloneTableStatement": "CLONE",
    "DeltaGenerateCommand": "GENERATE", "DeltaReorgTable": "REORG TABLE",
}


class SqlRefused(LakehouseError):
    """The statement would write, alter, cache, configure or read outside silver.* / gold.*."""


@dataclass
class Referenced:
    """What a statement that passed the check reads."""

    tables: list[str] = field(default_factory=list)  # "silver.sessions", each once
    namespaces: list[str] = field(default_factory=list)  # SHOW TABLES IN <namespace>
    is_query: bool = True  # False: a SHOW / DESCRIBE / EXPLAIN command

    def add_table(self, name: str) -> None:
        if name not in self.tables:
            self.tables.append(name)


READ_ONLY_HINT = "`lakehouse sql` runs read-only queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) over silver.* and gold.*"


def _seq(scala_seq: Any) -> list:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


def _kind(node: Any) -> str:
    return node.getClass().getName().rsplit(".", 1)[-1]


def _refuse(what: str) -> SqlRefused:
    return SqlRefused(f"refused {what}: {READ_ONLY_HINT}; nothing was run")


def _table_name(parts: list[str], ctes: set[str]) -> str | None:
    """`silver.x` / `gold.x` (also spark_catalog.gold.x) -> "gold.x"; a CTE's own name -> None."""
    if len(parts) == 3 and parts[0].lower() == "spark_catalog":
        parts = parts[1:]
    if len(parts) == 1 and parts[0].lower() in ctes:
        return None
    if len(parts) == 2 and parts[0].lower() in LAYERS and _IDENTIFIER.match(parts[1]):
        return f"{parts[0].lower()}.{parts[1].lower()}"
    if len(parts) == 2 and parts[0].lower() not in LAYERS:
        raise _refuse(f"a direct read of the path {parts[1]} ({parts[0]}.`...`)")
    raise _refuse(f"the table name {'.'.join(parts)} (name tables silver.<table> or gold.<table>)")


def _expressions(node: Any) -> Iterator[Any]:
    stack = _seq(node.expressions())
    while stack:
        expr = stack.pop()
        yield expr
        stack.extend(_seq(expr.children()))


def check_parsed(plan: Any) -> Referenced:
    """Walks Spark's parsed plan (a py4j LogicalPlan); raises SqlRefused or returns what it reads."""
    referenced = Referenced()
    ctes: set[str] = set()
    root = plan
    while _kind(root) == "UnresolvedWith":
        root = root.child()
    referenced.is_query = _kind(root) not in READ_COMMANDS

    def visit(node: Any) -> None:
        kind = _kind(node)
        if kind == "UnresolvedWith":
            ctes.update(str(pair._1()).lower() for pair in _seq(node.cteRelations()))
        if kind == "UnresolvedRelation":
            name = _table_name([str(p) for p in _seq(node.multipartIdentifier())], ctes)
            if name:
                referenced.add_table(name)
        elif kind in ("UnresolvedTable", "UnresolvedTableOrView", "UnresolvedView"):
            name = _table_name([str(p) for p in _seq(node.multipartIdentifier())], set())
            if name:
                referenced.add_table(name)
        elif kind == "UnresolvedNamespace":
            parts = [str(p).lower() for p in _seq(node.multipartIdentifier())]
            if parts and parts[-1] not in LAYERS:
                raise _refuse(f"the namespace {'.'.join(parts)}; only silver and gold are here")
            referenced.namespaces.extend(parts[-1:] or list(LAYERS))
        elif kind == "RelationTimeTravel":
            visit(node.relation())
        elif kind == "UnresolvedTableValuedFunction":
            name = ".".join(str(p) for p in _seq(node.name())).lower()
            if name not in TABLE_FUNCTIONS:
                raise _refuse(f"the table function {name}(...)")
        elif kind == "ExplainCommand":
            visit(node.logicalPlan())
        elif kind not in QUERY_NODES and kind not in READ_COMMANDS and kind not in REFERENCE_LEAVES:
            raise _refuse(STATEMENTS.get(kind, f"{kind} (not a read-only query operator)"))
        for expr in _expressions(node):
            if _kind(expr) == "ExpressionWithUnresolvedIdentifier":
                raise _refuse("IDENTIFIER(...) as a function name (a function named at run time)")
            if _kind(expr) == "UnresolvedFunction":
                name = str(_seq(expr.nameParts())[-1]).lower()
                if name in FORBIDDEN_FUNCTIONS:
                    raise _refuse(f"the function {name}(), which calls Java methods")
            if _kind(expr) in SUBQUERY_EXPRESSIONS:
                visit(expr.plan())
        for child in _seq(node.children()) + _seq(node.innerChildren()):
            visit(child)

    visit(plan)
    return referenced


def check_analyzed(plan: Any, allowed_paths: set[str]) -> None:
    """Every leaf of an analysed query plan is a registered table's files, or reads no file."""
    def norm(path: str) -> str:
        return path.removeprefix("file:").rstrip("/")

    allowed = {norm(p) for p in allowed_paths}

    def visit(node: Any) -> None:
        children = _seq(node.children()) + _seq(node.innerChildren())
        kind = _kind(node)
        for expr in _expressions(node):
            if _kind(expr) in FORBIDDEN_EXPRESSIONS:
                raise _refuse(f"{_kind(expr)}, which calls Java methods")
            if _kind(expr) in SUBQUERY_EXPRESSIONS:
                visit(expr.plan())
        if not children or kind == "LogicalRelation":
            if kind == "LogicalRelation":
                roots = {norm(str(p.toString())) for p in _seq(node.relation().location().rootPaths())}
                outside = sorted(roots - allowed)
                if outside:
                    raise _refuse(f"a read of {outside[0]}, which is not a silver.* or gold.* table")
            elif kind not in ANALYZED_LEAVES:
                raise _refuse(f"a read through {kind}")
        for child in children:
            visit(child)

    visit(plan)
