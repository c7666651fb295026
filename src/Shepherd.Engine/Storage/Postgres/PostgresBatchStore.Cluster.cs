using Npgsql;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    private const string Channel = "shepherd_batches";

    /// <inheritdoc />
    public string NodeName => _options.NodeName;

    /// <inheritdoc />
    public TimeSpan NodeTimeout => _options.NodeTimeout;

    /// <inheritdoc />
    public event Action? Changed;

    /// <inheritdoc />
    public Task<ClusterView> HeartbeatAsync(IReadOnlyCollection<string> lanes, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lanes);
        var at = now.ToUnixTimeMilliseconds();
        return InTransactionAsync(async (connection, tx) =>
        {
            // A node that finds no row of its own was taken for dead (or is new): whatever it leased is no longer its.
            var known = await ScalarAsync(connection, tx, "UPDATE nodes SET heartbeat_at = @now, lanes = @lanes WHERE name = @node RETURNING name", cancellationToken,
                ("node", NodeName), ("now", at), ("lanes", lanes.ToArray())) is not null;
            if (!known)
            {
                await ExecuteAsync(connection, tx, "INSERT INTO nodes (name, started_at, heartbeat_at, lanes) VALUES (@node, @now, @now, @lanes) ON CONFLICT (name) DO NOTHING", cancellationToken,
                    ("node", NodeName), ("now", at), ("lanes", lanes.ToArray()));
            }

            // A node silent past the timeout is dead: its leases go back to the queue (and any
            // lease past its own deadline, whoever holds it), its roles are free.
            var dead = await QueryAsync(connection, tx, "DELETE FROM nodes WHERE heartbeat_at < @alive RETURNING name", r => r.GetString(0), cancellationToken, ("alive", Alive(now)));
            await ExecuteAsync(connection, tx, "DELETE FROM roles WHERE holder = ANY(@dead)", cancellationToken, ("dead", dead.ToArray()));
            await ReleaseAsync(connection, tx, "leased_by = ANY(@dead) OR lease_until < @now", cancellationToken, ("dead", dead.ToArray()), ("now", at));
            var nodes = Convert.ToInt32(await ScalarAsync(connection, tx, "SELECT COUNT(*) FROM nodes", cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
            var others = (await QueryAsync(connection, tx, "SELECT lane, COUNT(*)::integer FROM nodes, unnest(lanes) AS lane WHERE name <> @node GROUP BY lane",
                r => (Lane: r.GetString(0), Nodes: r.GetInt32(1)), cancellationToken, ("node", NodeName)))
                .ToDictionary(x => x.Lane, x => x.Nodes, StringComparer.Ordinal);
            return new ClusterView(nodes, others) { Joined = !known };
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> HoldRoleAsync(string role, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(role);
        return await ScalarAsync("""
            INSERT INTO roles (role, holder, until_at) VALUES (@role, @node, @until)
            ON CONFLICT (role) DO UPDATE SET holder = @node, until_at = @until WHERE roles.holder = @node OR roles.until_at < @now
            RETURNING holder
            """, cancellationToken, ("role", role), ("node", NodeName), ("now", now.ToUnixTimeMilliseconds()), ("until", (now + NodeTimeout).ToUnixTimeMilliseconds())) is not null;
    }

    /// <inheritdoc />
    public Task LeaveAsync(CancellationToken cancellationToken) =>
        InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "DELETE FROM roles WHERE holder = @node; DELETE FROM nodes WHERE name = @node", cancellationToken, ("node", NodeName));
            return await ReleaseAsync(connection, tx, "leased_by = @node", cancellationToken, ("node", NodeName));
        }, cancellationToken);

    /// <summary>
    /// Listens for other nodes' changes on its own connection, and connects again after a loss
    /// (saying "changed" then, since a notice may have been missed meanwhile).
    /// </summary>
    private async Task ListenAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _data.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, notice) =>
                {
                    if (notice.Payload != NodeName)
                    {
                        Changed?.Invoke();
                    }
                };
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }

                Changed?.Invoke();
                while (true)
                {
                    await connection.WaitAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), _time, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private Task<int> NotifyAsync(NpgsqlConnection connection, NpgsqlTransaction tx, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, tx, $"SELECT pg_notify('{Channel}', @node)", cancellationToken, ("node", NodeName));

    /// <summary>The oldest heartbeat of a node still alive at <paramref name="now"/>.</summary>
    private long Alive(DateTimeOffset? now = null) => ((now ?? _time.GetUtcNow()) - NodeTimeout).ToUnixTimeMilliseconds();
}
