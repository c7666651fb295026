using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using Npgsql;

namespace Shepherd.Testing;

/// <summary>
/// A PostgreSQL server shared by every test in the process; each test asks it for a brand-new empty database.
/// </summary>
/// <remarks>
/// <para>When <c>SHEPHERD_TEST_POSTGRES</c> holds a connection string, that server is used and the databases
/// created on it are dropped when the process exits.</para>
/// <para>Otherwise a throwaway cluster is initialised in a fresh temp folder on first use, from the binaries in
/// <c>SHEPHERD_PG_BIN</c>, <c>pg_config --bindir</c> or the newest <c>/usr/lib/postgresql/*/bin</c>. It runs as
/// the <c>postgres</c> system user (or <c>nobody</c>) when the process is root, because PostgreSQL refuses to run
/// as root, and it is stopped and its folder deleted when the process exits.</para>
/// </remarks>
public static class PostgresCluster
{
    /// <summary>Environment variable holding a connection string to an existing server whose user may create databases.</summary>
    public const string ServerVariable = "SHEPHERD_TEST_POSTGRES";

    /// <summary>Environment variable naming the folder that holds <c>initdb</c> and <c>pg_ctl</c>.</summary>
    public const string BinVariable = "SHEPHERD_PG_BIN";

    private static readonly string? _external = Environment.GetEnvironmentVariable(ServerVariable) is { Length: > 0 } value ? value : null;

    private static readonly Lazy<string?> _binDirectory = new(FindBinDirectory);

    // Only databases on an external server need dropping; a throwaway cluster goes as a whole.
    private static readonly ConcurrentQueue<string> _externalDatabases = new();

    // Started once; callers wait on the same task with their own token, so one cancelled caller cannot cancel the start.
    private static readonly Lazy<Task<string>> _server = new(StartServerAsync);

    /// <summary>
    /// Why the PostgreSQL tests cannot run here, or <see langword="null"/> when they can. It is set only when
    /// PostgreSQL is absent; a server that is installed but fails to start makes the tests fail instead.
    /// </summary>
    /// <example><c>if (PostgresCluster.SkipReason is { } reason) Assert.Skip(reason);</c></example>
    public static string? SkipReason =>
        _external is not null ? null
        : OperatingSystem.IsWindows() ? $"The throwaway PostgreSQL cluster needs Linux or macOS; set {ServerVariable} to run the PostgreSQL tests."
        : _binDirectory.Value is null ? $"PostgreSQL is not installed (no initdb in {BinVariable}, pg_config --bindir or /usr/lib/postgresql/*/bin) and {ServerVariable} is not set."
        : null;

    /// <summary>The connection string to the server's <c>postgres</c> database, starting the cluster on first use.</summary>
    /// <param name="cancellationToken">Stops waiting; the start itself goes on for the other callers.</param>
    /// <returns>An Npgsql connection string.</returns>
    public static Task<string> ServerConnectionStringAsync(CancellationToken cancellationToken) =>
        _server.Value.WaitAsync(cancellationToken);

    /// <summary>Creates a database with a unique name on the shared server, starting the cluster on first use.</summary>
    /// <param name="cancellationToken">Cancels the wait and the creation.</param>
    /// <returns>An Npgsql connection string to the new, empty database.</returns>
    public static async Task<string> CreateDatabaseAsync(CancellationToken cancellationToken)
    {
        var server = await ServerConnectionStringAsync(cancellationToken);
        var name = "t_" + Guid.NewGuid().ToString("N");
        await using (var connection = new NpgsqlConnection(server))
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        if (_external is not null)
        {
            _externalDatabases.Enqueue(name);
        }

        return new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;
    }

    private static async Task<string> StartServerAsync()
    {
        if (_external is not null)
        {
            AppDomain.CurrentDomain.ProcessExit += (_, _) => DropTestDatabases(_external);
            return _external;
        }

        if (OperatingSystem.IsWindows() || _binDirectory.Value is not { } bin)
        {
            throw new InvalidOperationException(SkipReason);
        }

        return await LocalCluster.StartAsync(bin);
    }

    // Best effort: FORCE ends the connections still open in the pools.
    private static void DropTestDatabases(string server)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(server) { Pooling = false, Timeout = 5, CommandTimeout = 30 };
            using var connection = new NpgsqlConnection(builder.ConnectionString);
            connection.Open();
            foreach (var name in _externalDatabases)
            {
                using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
                drop.ExecuteNonQuery();
            }
        }
        catch (NpgsqlException)
        {
            // The server is gone or refuses; the databases stay, which costs disk space and nothing else.
        }
    }

    private static string? FindBinDirectory()
    {
        if (Environment.GetEnvironmentVariable(BinVariable) is { Length: > 0 } configured)
        {
            // Returned even without initdb in it: a wrong setting must fail the tests, not skip them.
            return configured;
        }

        var pgConfig = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(folder => Path.Combine(folder, "pg_config"))
            .FirstOrDefault(File.Exists);
        if (pgConfig is not null)
        {
            var (exitCode, output) = Command.TryRunAsync(Environment.CurrentDirectory, TimeSpan.FromSeconds(10), pgConfig, "--bindir")
                .GetAwaiter().GetResult();
            if (exitCode == 0 && HasInitdb(output.Trim()))
            {
                return output.Trim();
            }
        }

        const string Debian = "/usr/lib/postgresql";
        return Directory.Exists(Debian)
            ? Directory.GetDirectories(Debian)
                .Where(version => HasInitdb(Path.Combine(version, "bin")))
                .OrderByDescending(version => double.TryParse(Path.GetFileName(version), out var number) ? number : 0)
                .Select(version => Path.Combine(version, "bin"))
                .FirstOrDefault()
            : null;
    }

    private static bool HasInitdb(string folder) => File.Exists(Path.Combine(folder, "initdb"));
}

/// <summary>A cluster in a temp folder of its own, stopped and deleted when the process exits.</summary>
[UnsupportedOSPlatform("windows")]
file sealed class LocalCluster
{
    private const string Superuser = "shepherd";

    private readonly string _bin;
    private readonly string _root;
    private readonly string? _owner;

    private LocalCluster(string bin, string root, string? owner)
    {
        _bin = bin;
        _root = root;
        _owner = owner;
    }

    private string Data => Path.Combine(_root, "data");

    private string ServerLog => Path.Combine(_root, "server.log");

    private string Notes => Path.Combine(_root, "cluster.log");

    /// <returns>The connection string to the new cluster's <c>postgres</c> database.</returns>
    public static async Task<string> StartAsync(string bin)
    {
        if (!File.Exists(Path.Combine(bin, "initdb")))
        {
            throw new InvalidOperationException($"{bin} holds no initdb; check {PostgresCluster.BinVariable}.");
        }

        var owner = Environment.UserName == "root" ? await UnprivilegedUserAsync() : null;

        // Under /tmp when root: the server's user must reach the folder, and root's TMPDIR may sit in a private home.
        var root = Path.Combine(owner is null ? Path.GetTempPath() : "/tmp", "shepherd-pg-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var cluster = new LocalCluster(bin, root, owner);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.Stop();
        cluster.Note($"cluster folder {root}, binaries {bin}, server user {owner ?? Environment.UserName}");

        if (owner is not null)
        {
            await cluster.RunAsync(TimeSpan.FromSeconds(10), "chown", owner, root);
        }

        await cluster.RunAsync(TimeSpan.FromMinutes(2), cluster.AsOwner("initdb",
            "-D", cluster.Data, "-A", "trust", "-U", Superuser, "--no-sync", "-E", "UTF8", "--locale=C"));
        await cluster.StartWatchdogAsync();
        return await cluster.StartServerAsync();
    }

    private static async Task<string> UnprivilegedUserAsync()
    {
        var (exitCode, _) = await Command.TryRunAsync("/", TimeSpan.FromSeconds(10), "id", "-u", "postgres");
        return exitCode == 0 ? "postgres" : "nobody";
    }

    private async Task<string> StartServerAsync()
    {
        // The free port is only free when probed; another process can take it before the server binds it.
        const int Attempts = 3;
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort();
            var options = string.Join(' ',
                "-c listen_addresses=127.0.0.1", $"-p {port}", $"-c unix_socket_directories='{_root}'",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=300", "-c shared_buffers=128MB");
            var (program, arguments) = AsOwner("pg_ctl", "start", "-D", Data, "-l", ServerLog, "-w", "-t", "60", "-o", options);
            var (exitCode, output) = await Command.TryRunAsync(_root, TimeSpan.FromSeconds(90), program, arguments);
            Note($"pg_ctl start on port {port} exited with {exitCode}\n{output}");
            if (exitCode == 0)
            {
                return new NpgsqlConnectionStringBuilder
                {
                    Host = "127.0.0.1",
                    Port = port,
                    Username = Superuser,
                    Database = "postgres",
                    Pooling = true,
                    MaxPoolSize = 50,
                    IncludeErrorDetail = true,
                    Timeout = 15,
                    CommandTimeout = 60,
                }.ConnectionString;
            }

            if (attempt == Attempts)
            {
                throw new InvalidOperationException(
                    $"PostgreSQL did not start in {_root} after {Attempts} attempts.\npg_ctl said:\n{output}\nserver log ends:\n{ServerLogTail()}");
            }
        }
    }

    // ProcessExit does not run when the test host is killed, so a detached shell polls the host and, once it is
    // gone, stops the server (SIGQUIT is an immediate shutdown) and deletes the folder. It leaves by itself once
    // Stop has deleted the folder.
    private Task StartWatchdogAsync()
    {
        const string Script = """
            (
              while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 2; done
              if [ -f "$2/data/postmaster.pid" ]; then kill -QUIT "$(head -n 1 "$2/data/postmaster.pid")"; sleep 2; fi
              rm -rf "$2"
            ) </dev/null >/dev/null 2>&1 &
            """;
        return RunAsync(TimeSpan.FromSeconds(10), "sh", "-c", Script, "watchdog", Environment.ProcessId.ToString(), _root);
    }

    private void Stop()
    {
        try
        {
            if (File.Exists(Path.Combine(Data, "postmaster.pid")))
            {
                var (program, arguments) = AsOwner("pg_ctl", "stop", "-D", Data, "-m", "immediate", "-w", "-t", "10");
                var (exitCode, output) = Command.TryRunAsync(_root, TimeSpan.FromSeconds(15), program, arguments).GetAwaiter().GetResult();
                Note($"pg_ctl stop exited with {exitCode}\n{output}");
            }

            Directory.Delete(_root, recursive: true);
        }
        catch (Exception exception)
        {
            // The process is exiting: a throw here would hide the test results. The watchdog removes what is left.
            Note($"stop failed: {exception}");
        }
    }

    private (string Program, string[] Arguments) AsOwner(string tool, params string[] arguments) =>
        _owner is null
            ? (Path.Combine(_bin, tool), arguments)
            : ("runuser", ["-u", _owner, "--", Path.Combine(_bin, tool), .. arguments]);

    private Task RunAsync(TimeSpan timeout, (string Program, string[] Arguments) command) =>
        RunAsync(timeout, command.Program, command.Arguments);

    private async Task RunAsync(TimeSpan timeout, string program, params string[] arguments)
    {
        var (exitCode, output) = await Command.TryRunAsync(_root, timeout, program, arguments);
        Note($"{Path.GetFileName(program)} {string.Join(' ', arguments)} exited with {exitCode}\n{output}");
        if (exitCode != 0)
        {
            throw new InvalidOperationException(
                $"{program} {string.Join(' ', arguments)} exited with {exitCode} while setting up PostgreSQL in {_root}.\n{output}");
        }
    }

    private string ServerLogTail()
    {
        if (!File.Exists(ServerLog))
        {
            return "(no server log)";
        }

        return string.Join('\n', File.ReadLines(ServerLog).TakeLast(40));
    }

    private void Note(string message)
    {
        try
        {
            File.AppendAllText(Notes, $"{TimeProvider.System.GetUtcNow():HH:mm:ss.fff} {message.TrimEnd()}\n");
        }
        catch (IOException)
        {
            // The folder is already gone; the note has nowhere to go.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Runs a program to completion, capturing what it writes.</summary>
file static class Command
{
    /// <returns>The exit code, and stdout followed by stderr.</returns>
    public static async Task<(int ExitCode, string Output)> TryRunAsync(
        string workingDirectory, TimeSpan timeout, string program, params IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program, arguments)
        {
            // The server's user may not be allowed into the test host's folder, and initdb and pg_ctl resolve it.
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start.");
        using var deadline = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(deadline.Token);
        var stderr = process.StandardError.ReadToEndAsync(deadline.Token);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
            return (process.ExitCode, (await stdout + await stderr).Trim());
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {timeout}.");
        }
    }
}
