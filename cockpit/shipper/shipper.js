/* shipper's page in Cockpit: it runs the shipper command (--json where the CLI
 * has it) through cockpit.spawn with administrative access, and never reads
 * shipper's files itself, so what the page sees is what the CLI prints, and
 * the CLI never prints a secret. Plain DOM, textContent only (no markup from
 * the command's output). Unknown keys in the JSON are ignored, missing ones
 * shown as "-": the status grows (destinations, standby) faster than this page.
 */
"use strict";

(function () {
    var state = { status: null, sets: [] };

    function $(id) { return document.getElementById(id); }

    function el(tag, attrs, children) {
        var node = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function (key) {
            if (key === "text") node.textContent = attrs[key];
            else if (key === "cls") node.className = attrs[key];
            else node.setAttribute(key, attrs[key]);
        });
        (children || []).forEach(function (child) {
            node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
        });
        return node;
    }

    function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

    function show(node, on) { node.hidden = !on; }

    /* ---- running shipper ------------------------------------------------ */

    var TOO_OLD = /invalid choice|unrecognized arguments|the following arguments are required/;

    /* Resolves {exit, out, err, problem}; never rejects: every caller shows its own failure. */
    function run(args, options) {
        return new Promise(function (resolve) {
            var opts = Object.assign({ superuser: "require", err: "message" }, options || {});
            var stream = opts.stream;
            delete opts.stream;
            var proc = cockpit.spawn(["shipper"].concat(args), opts);
            if (stream) proc.stream(stream);
            proc.then(function (out, err) {
                resolve({ exit: 0, out: out || "", err: err || "", problem: null });
            }, function (ex, out) {
                resolve({
                    exit: ex.exit_status === undefined ? null : ex.exit_status,
                    out: out || "",
                    err: ex.message || "",
                    problem: ex.problem || null
                });
            });
        });
    }

    /* What failed and what to do, for a run that did not give what the page needs. */
    function failure(args, result) {
        var command = "shipper " + args.join(" ");
        if (result.problem === "not-found")
            return "The shipper command is not installed on this server (" + command + " could not start). " +
                "Install the shipper package (dnf install shipper), then reload this page.";
        if (result.problem === "access-denied" || result.problem === "authentication-failed")
            return "shipper needs administrative access. Turn on administrative access " +
                "(the \"Limited access\" button at the top of Cockpit), then reload this page.";
        if (result.problem)
            return command + " could not run (" + cockpit.message(result) + "). Reload the page; if it stays, " +
                "check that cockpit-bridge can start programs on this server.";
        if (result.exit === 2 && TOO_OLD.test(result.err))
            return "This shipper is too old for the console: it does not know `" + command + "`. " +
                "Update the shipper package to the version of shipper-cockpit, then reload.";
        var said = (result.err || result.out || "").trim();
        return command + " failed (exit " + result.exit + ")" + (said ? ": " + said : "") +
            (said ? "" : ". Run it in a terminal on this server to see why.");
    }

    function runJson(args, okExits) {
        return run(args).then(function (result) {
            var allowed = okExits || [0];
            if (result.problem || allowed.indexOf(result.exit) < 0) throw new Error(failure(args, result));
            try {
                return JSON.parse(result.out);
            } catch (e) {
                throw new Error("shipper " + args.join(" ") + " did not print JSON: this shipper is too old " +
                    "or broken. Update the shipper package, then reload.");
            }
        });
    }

    function alertBox(node, text, kind) {
        clear(node);
        node.className = "alert alert-" + (kind || "danger");
        node.textContent = text;
        show(node, true);
    }

    function resultBox(node, text, kind) {
        clear(node).appendChild(el("div", { cls: "alert alert-" + kind, text: text }));
    }

    /* ---- formatting ----------------------------------------------------- */

    function dash(value) { return value === null || value === undefined || value === "" ? "-" : String(value); }

    function bytes(n) {
        if (typeof n !== "number") return "-";
        var units = ["B", "KiB", "MiB", "GiB", "TiB"];
        var i = 0;
        while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
        return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
    }

    function duration(seconds) {
        if (typeof seconds !== "number") return "-";
        seconds = Math.round(seconds);
        if (seconds < 60) return seconds + "s";
        var m = Math.floor(seconds / 60);
        if (m < 60) return m + "m " + (seconds % 60) + "s";
        var h = Math.floor(m / 60);
        if (h < 48) return h + "h " + (m % 60) + "m";
        return Math.floor(h / 24) + "d " + (h % 24) + "h";
    }

    function when(iso) {
        if (!iso) return "-";
        var d = new Date(iso);
        return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
    }

    function fill(dl, rows) {
        clear(dl);
        rows.forEach(function (row) {
            dl.appendChild(el("dt", { text: row[0] }));
            var dd = el("dd", { text: dash(row[1]) });
            if (row[2]) dd.className = row[2];
            if (row[3]) dd.id = row[3];
            dl.appendChild(dd);
        });
    }

    /* A value of unknown shape (destinations, standby): key/value rows, nested JSON as text. */
    function genericRows(obj) {
        return Object.keys(obj || {}).map(function (key) {
            var value = obj[key];
            if (value !== null && typeof value === "object") value = JSON.stringify(value);
            return [key, value];
        });
    }

    /* ---- overview ------------------------------------------------------- */

    function ageLevel(status) {
        var newest = status.newest_complete || {};
        if (typeof newest.age !== "number") return "CRITICAL";
        if (typeof status.critical_after === "number" && newest.age > status.critical_after) return "CRITICAL";
        if (typeof status.warning_after === "number" && newest.age > status.warning_after) return "WARNING";
        return "OK";
    }

    function renderOverview(status) {
        var level = status.status || "UNKNOWN";
        var banner = $("overview-state");
        banner.className = "state-banner state-" + level.toLowerCase();
        banner.textContent = level;
        banner.setAttribute("data-status", level);

        var problems = clear($("overview-problems"));
        (status.problems || []).forEach(function (p) {
            var text = typeof p === "string" ? p : (p.level ? p.level + ": " : "") + (p.text || "");
            problems.appendChild(el("li", { cls: "problem-" + String(p.level || "").toLowerCase(), text: text }));
        });

        $("host-name").textContent = status.host ? "on " + status.host : "";
        var daemon = status.daemon;
        var server = [
            ["Role", status.role],
            ["Host", status.host],
            ["Schedule", status.schedule ? status.schedule + (status.enabled === false ? " (disabled)" : "") : null]
        ];
        if (daemon) {
            server.push(["Daemon", daemon.running ? "running (pid " + dash(daemon.pid) + ")" + (daemon.busy ? ", taking a set" : "") : "not running"]);
        }
        if (status.next_run !== undefined) server.push(["Next run", status.next_run ? when(status.next_run) : "none (schedule off)"]);
        if (status.receiver) server.push(["Receiver", (status.receiver.unit || "receiver") + (status.receiver.answers ? " answers" : " does not answer") + (status.receiver.listen ? " on " + status.receiver.listen : "")]);
        fill($("overview-server"), server);

        var newest = status.newest_complete || {};
        var age = ageLevel(status);
        fill($("overview-newest"), [
            ["Set", newest.set],
            ["Age", typeof newest.age === "number" ? duration(newest.age) + " (" + age + ")" : "no complete set", "age-" + age.toLowerCase(), "overview-age"],
            ["Warning after", duration(status.warning_after)],
            ["Stale after (max_age)", duration(status.max_age)]
        ]);

        var last = status.last_run;
        fill($("overview-last"), last ? [
            ["Set", last.set],
            ["Outcome", last.status],
            ["Started", when(last.started)],
            ["Duration", duration(last.duration)],
            ["Added", bytes(last.bytes_added)],
            ["Error", last.error || "none"],
            ["Failures in a row", last.failures_in_a_row]
        ] : [["Outcome", status.role === "slave" ? "none here: the master takes the sets" : "no run yet"]]);

        var repo = status.repository || {};
        fill($("overview-repo"), [
            ["Location", repo.location],
            ["Sets", repo.sets === undefined ? null : repo.sets + " (" + dash(repo.complete_sets) + " complete)"],
            ["Size", bytes(repo.size)],
            ["Newest set", repo.newest ? repo.newest + " (" + dash(repo.newest_status) + ")" : null],
            ["Error", repo.error || "none"]
        ]);

        var dests = status.destinations;
        show($("overview-destinations-card"), !!dests);
        if (dests) {
            var box = clear($("overview-destinations"));
            var list = Array.isArray(dests) ? dests : Object.keys(dests).map(function (name) {
                var d = dests[name];
                return Object.assign({ name: name }, typeof d === "object" && d !== null ? d : { state: d });
            });
            list.forEach(function (d) {
                var dl = el("dl", { cls: "destination" });
                box.appendChild(el("h3", { text: dash(d.name || d.url || d.location) }));
                fill(dl, genericRows(d).filter(function (r) { return r[0] !== "name" }));
                box.appendChild(dl);
            });
        }
        var standby = status.standby;
        show($("overview-standby-card"), !!standby);
        if (standby) fill($("overview-standby"), typeof standby === "object" ? genericRows(standby) : [["State", standby]]);
    }

    // One bar per set (the newest 30, oldest first): its value against the largest one.
    function renderBars(box, sets, value, label) {
        clear(box);
        var recent = sets.slice(0, 30).reverse();
        if (!recent.length) {
            box.textContent = "no sets yet";
            return;
        }
        var max = Math.max.apply(null, recent.map(function (s) { return value(s) || 0 })) || 1;
        recent.forEach(function (s) {
            var bar = el("div", { cls: "bar bar-" + s.status, title: s.id + ": " + label(s) + ", " + s.status });
            bar.style.height = Math.max(2, Math.round(100 * (value(s) || 0) / max)) + "%";
            box.appendChild(bar);
        });
    }

    function renderChart(sets) {
        renderBars($("overview-chart"), sets, function (s) { return s.bytes_added },
                   function (s) { return bytes(s.bytes_added) + " added" });
        renderBars($("overview-durations"), sets, function (s) { return s.duration },
                   function (s) { return typeof s.duration === "number" ? duration(s.duration) + " to take" : "duration unknown" });
    }

    function loadOverview() {
        $("overview-state").setAttribute("data-status", "LOADING");
        return runJson(["status", "--json"], [0, 1, 2, 3]).then(function (status) {
            state.status = status;
            show($("fatal"), false);
            renderOverview(status);
            return runJson(["sets", "--json"]).then(function (sets) {
                state.sets = sets;
                renderChart(sets);
            }, function (e) { $("overview-chart").textContent = e.message });
        }).catch(function (e) {
            alertBox($("fatal"), e.message);
            var banner = $("overview-state");
            banner.className = "state-banner state-unknown";
            banner.textContent = "UNKNOWN";
            banner.setAttribute("data-status", "UNKNOWN");
        });
    }

    /* ---- sets ----------------------------------------------------------- */

    function options(select, sets, first) {
        var keep = select.value;
        clear(select);
        if (first) select.appendChild(el("option", { value: "", text: first }));
        sets.forEach(function (s) {
            select.appendChild(el("option", { value: s.id, text: s.id + " (" + s.status + ")" }));
        });
        if (keep) select.value = keep;
    }

    function partNames(s) { return (s.parts || []).map(function (p) { return p.name }) }

    function renderSets(sets) {
        var body = clear($("sets-table").querySelector("tbody"));
        if (!sets.length) body.appendChild(el("tr", {}, [el("td", { colspan: "7", text: "no sets yet" })]));
        sets.forEach(function (s) {
            var button = el("button", { cls: "btn btn-small", text: "Manifest" });
            button.addEventListener("click", function () { showManifest(s) });
            body.appendChild(el("tr", { "data-set": s.id }, [
                el("td", { text: s.id }),
                el("td", { text: when(s.time) }),
                el("td", { cls: "status-" + s.status, text: dash(s.status) }),
                el("td", { text: bytes(s.bytes_added) }),
                el("td", { text: String((s.vanished || 0) + (s.noted ? " +" + s.noted : "")) }),
                el("td", { text: partNames(s).join(", ") || "-" }),
                el("td", {}, [button])
            ]));
        });
        options($("diff-first"), sets);
        options($("diff-second"), sets);
        if (sets.length > 1 && !$("diff-first").dataset.touched) {
            $("diff-first").value = sets[1].id;
            $("diff-second").value = sets[0].id;
        }
        options($("restore-set"), sets);
        var withDb = sets.filter(function (s) { return partNames(s).some(isDbPart) });
        show($("restore-db-card"), withDb.length > 0);
        options($("restore-db-set"), withDb);
        dbParts();
        options($("promote-set"), sets.filter(function (s) { return s.status === "complete" }), "the newest complete set");
    }

    /* One database of a set (mariadb:app), not an engine's globals (users, roles): those load with promote. */
    function isDbPart(name) { return /^(mariadb|postgresql):/.test(name) && !/:globals$/.test(name) }

    function dbParts() {
        var id = $("restore-db-set").value;
        var chosen = state.sets.filter(function (s) { return s.id === id })[0];
        var select = clear($("restore-db-part"));
        if (chosen) partNames(chosen).filter(isDbPart).forEach(function (name) {
            select.appendChild(el("option", { value: name, text: name }));
        });
    }

    function showManifest(s) {
        var box = clear($("set-manifest"));
        box.appendChild(el("h2", { text: "Set " + s.id }));
        var dl = el("dl");
        fill(dl, [["Status", s.status], ["Time", when(s.time)], ["Host", s.host], ["Added", bytes(s.bytes_added)],
            ["Vanished files", s.vanished], ["Manifest snapshot", s.manifest_snapshot]]);
        box.appendChild(dl);
        var table = el("table", { cls: "table manifest-parts" }, [
            el("thead", {}, [el("tr", {}, [el("th", { text: "Part" }), el("th", { text: "Snapshot" }), el("th", { text: "Added" }), el("th", { text: "Outcome" })])])
        ]);
        var tbody = el("tbody");
        (s.parts || []).forEach(function (p) {
            tbody.appendChild(el("tr", {}, [el("td", { text: p.name }), el("td", { cls: "mono", text: dash(p.snapshot) }),
                el("td", { text: bytes(p.bytes_added) }), el("td", { text: dash(p.outcome || p.status || (p.snapshot ? "ok" : "failed")) })]));
        });
        table.appendChild(tbody);
        box.appendChild(table);
        show(box, true);
    }

    function loadSets() {
        return runJson(["sets", "--json"]).then(function (sets) {
            state.sets = sets;
            show($("sets-error"), false);
            renderSets(sets);
        }).catch(function (e) { alertBox($("sets-error"), e.message) });
    }

    function diffList(title, items) {
        var box = el("div", { cls: "diff-group" }, [el("h3", { text: title + " (" + items.length + ")" })]);
        var ul = el("ul", { cls: "mono" });
        items.slice(0, 200).forEach(function (item) {
            ul.appendChild(el("li", { text: typeof item === "string" ? item : JSON.stringify(item) }));
        });
        if (items.length > 200) ul.appendChild(el("li", { text: "… and " + (items.length - 200) + " more (shipper diff on the command line shows them all)" }));
        box.appendChild(ul);
        return box;
    }

    function runDiff() {
        var a = $("diff-first").value, b = $("diff-second").value;
        var out = $("diff-result");
        if (!a || !b || a === b) return resultBox(out, "Choose two different sets.", "warning");
        resultBox(out, "Comparing " + a + " with " + b + "…", "info");
        runJson(["diff", a, b, "--json"]).then(function (d) {
            clear(out);
            out.appendChild(diffList("Added", d.added || []));
            out.appendChild(diffList("Removed", d.removed || []));
            out.appendChild(diffList("Changed", d.changed || []));
            out.appendChild(diffList("Metadata only", d.metadata || []));
            var dbs = d.databases || {};
            out.appendChild(diffList("Databases", Object.keys(dbs).map(function (k) { return k + ": " + (typeof dbs[k] === "string" ? dbs[k] : JSON.stringify(dbs[k])) })));
        }).catch(function (e) { resultBox(out, e.message, "danger") });
    }

    function runRestore() {
        var id = $("restore-set").value, target = $("restore-target").value.trim();
        var out = $("restore-result");
        if (!id) return resultBox(out, "Choose a set.", "warning");
        if (!target || target[0] !== "/") return resultBox(out, "Give the folder as an absolute path, e.g. /var/tmp/restore.", "warning");
        if (/^\/+$/.test(target)) return resultBox(out, "Restoring under / would overwrite this server's files: use Promote for that, or choose another folder.", "warning");
        var args = ["restore", id, "--target", target];
        $("restore-run").disabled = true;
        resultBox(out, "Restoring set " + id + " under " + target + "…", "info");
        run(args).then(function (result) {
            $("restore-run").disabled = false;
            if (result.exit === 0 && !result.problem) resultBox(out, result.out.trim() || "restored", "success");
            else resultBox(out, failure(args, result), "danger");
        });
    }

    function runRestoreDb() {
        var id = $("restore-db-set").value, part = $("restore-db-part").value, name = $("restore-db-as").value.trim();
        var out = $("restore-db-result");
        if (!id || !part) return resultBox(out, "Choose a set and one of its databases.", "warning");
        if (!/^[A-Za-z0-9_]+$/.test(name)) return resultBox(out, "Give the new database's name (letters, digits, _).", "warning");
        var args = ["restore-db", id, part, "--as", name];
        $("restore-db-run").disabled = true;
        resultBox(out, "Loading " + part + " of set " + id + " as " + name + "…", "info");
        run(args).then(function (result) {
            $("restore-db-run").disabled = false;
            if (result.exit === 0 && !result.problem) resultBox(out, result.out.trim() || "loaded", "success");
            else resultBox(out, failure(args, result), "danger");
        });
    }

    /* ---- promote -------------------------------------------------------- */

    function promoteArgs() {
        var args = ["promote"];
        var id = $("promote-set").value;
        var root = $("promote-root").value.trim() || "/";
        if (id) args.push("--set", id);
        if (root !== "/") args.push("--root", root);
        return args;
    }

    function renderPromoteRole() {
        var status = state.status;
        var note = $("promote-role");
        if (status && status.role && status.role !== "slave") {
            alertBox(note, "This server is the " + status.role + ": promote runs on the slave, the server that " +
                "holds the repository. Open this page on the slave.", "info");
            show($("promote-body"), false);
        } else {
            show(note, false);
            show($("promote-body"), true);
        }
        $("promote-host").textContent = status && status.host ? status.host : "?";
    }

    function promoteCheck() {
        var args = promoteArgs().concat(["--dry-run"]);
        var plan = $("promote-plan");
        show($("promote-confirm"), false);
        $("promote-typed").value = "";
        $("promote-run").disabled = true;
        clear($("promote-result"));
        plan.textContent = "Checking…";
        show(plan, true);
        run(args).then(function (result) {
            plan.textContent = (result.out + (result.err ? "\n" + result.err : "")).trim();
            if (result.exit === 0 && !result.problem) {
                plan.dataset.args = JSON.stringify(promoteArgs());
                show($("promote-confirm"), true);
            } else {
                resultBox($("promote-result"), failure(args, result), "danger");
            }
        });
    }

    function promoteTyped() {
        var host = state.status && state.status.host;
        $("promote-run").disabled = !host || $("promote-typed").value.trim() !== host;
    }

    function promoteRun() {
        var host = state.status && state.status.host;
        if (!host || $("promote-typed").value.trim() !== host) return;
        var checked = $("promote-plan").dataset.args;
        if (checked !== JSON.stringify(promoteArgs()))
            return resultBox($("promote-result"), "The set or root changed since the check: check again.", "warning");
        var args = promoteArgs().concat(["--yes"]);
        var progress = $("promote-progress");
        show($("promote-confirm"), false);
        $("promote-check").disabled = true;
        progress.textContent = "";
        show(progress, true);
        resultBox($("promote-result"), "Promoting… do not close this page until the report appears.", "info");
        run(args, {
            err: "out",
            stream: function (data) { progress.textContent += data; progress.scrollTop = progress.scrollHeight }
        }).then(function (result) {
            $("promote-check").disabled = false;
            if (result.exit === 0 && !result.problem) {
                resultBox($("promote-result"), "Promoted: this server is now the master. The report is above.", "success");
            } else {
                resultBox($("promote-result"), failure(args, result) +
                    " What promote did is in the report above; run promote again to resume where it stopped.", "danger");
            }
            loadOverview();
        });
    }

    /* ---- settings ------------------------------------------------------- */

    function renderSchedule() {
        var s = state.status;
        $("settings-schedule").textContent = s ? "The schedule (" + dash(s.schedule) + ") is " +
            (s.enabled === false ? "off" : "on") + "." : "unknown";
        $("settings-schedule").dataset.enabled = s ? String(s.enabled !== false) : "";
    }

    function setEnabled(on) {
        var args = [on ? "enable" : "disable"];
        var out = $("settings-result");
        run(args).then(function (result) {
            if (result.exit === 0 && !result.problem) resultBox(out, result.out.trim(), "success");
            else resultBox(out, failure(args, result), "danger");
            return loadOverview().then(renderSchedule);
        });
    }

    /* config validate: "OK" on stdout, or one finding a line on stderr, most "FILE:LINE: key: text". */
    function validate() {
        var args = ["config", "validate"];
        var out = clear($("settings-findings"));
        out.textContent = "Checking…";
        run(args).then(function (result) {
            clear(out);
            if (result.problem) return resultBox(out, failure(args, result), "danger");
            var lines = result.out.split("\n").concat(result.err.split("\n")).filter(function (l) { return l.trim() });
            var ok = result.exit === 0;
            out.appendChild(el("div", { cls: "alert alert-" + (ok ? "success" : "danger"), text: ok ? "The configuration is valid." : "The configuration has problems: fix each line below in the file, then check again." }));
            var ul = el("ul", { cls: "findings" });
            lines.forEach(function (line) {
                var m = /^(?:shipper: )?(warning: )?(\/[^:]+):(\d+):\s*(.*)$/.exec(line);
                var li = el("li", {});
                if (m) {
                    li.appendChild(el("span", { cls: "mono where", text: m[2] + " line " + m[3] }));
                    li.appendChild(document.createTextNode(" " + (m[1] || "") + m[4]));
                } else {
                    li.textContent = line.replace(/^shipper: /, "");
                }
                ul.appendChild(li);
            });
            out.appendChild(ul);
        });
    }

    /* ---- pages ---------------------------------------------------------- */

    var PAGES = ["overview", "sets", "promote", "settings"];

    function go() {
        var page = (window.location.hash || "#overview").slice(1);
        if (PAGES.indexOf(page) < 0) page = "overview";
        PAGES.forEach(function (p) {
            show($("page-" + p), p === page);
            var tab = document.querySelector("#tabs a[data-page=" + p + "]");
            tab.className = p === page ? "active" : "";
        });
        if (page === "overview") loadOverview();
        if (page === "sets") loadSets();
        if (page === "promote") loadOverview().then(function () { renderPromoteRole(); return loadSets() });
        if (page === "settings") loadOverview().then(renderSchedule);
    }

    document.addEventListener("DOMContentLoaded", function () {
        $("overview-refresh").addEventListener("click", loadOverview);
        $("diff-run").addEventListener("click", runDiff);
        $("diff-first").addEventListener("change", function () { $("diff-first").dataset.touched = "1" });
        $("restore-run").addEventListener("click", runRestore);
        $("restore-db-set").addEventListener("change", dbParts);
        $("restore-db-run").addEventListener("click", runRestoreDb);
        $("promote-check").addEventListener("click", promoteCheck);
        $("promote-typed").addEventListener("input", promoteTyped);
        $("promote-run").addEventListener("click", promoteRun);
        $("settings-enable").addEventListener("click", function () { setEnabled(true) });
        $("settings-disable").addEventListener("click", function () { setEnabled(false) });
        $("settings-validate").addEventListener("click", validate);
        window.addEventListener("hashchange", go);
        go();
    });
}());
