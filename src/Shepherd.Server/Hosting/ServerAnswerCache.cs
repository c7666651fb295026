using Microsoft.Extensions.Logging;
using Shepherd.Engine;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Hosting;

/// <summary>
/// The server's answer cache, opened when the engine starts: the configured file, or beside an
/// embedded store's file. A cache that cannot be opened is logged and left out (every request is
/// sent); the engine's next start tries again.
/// </summary>
internal sealed partial class ServerAnswerCache(ServerOptions settings, ShepherdEngineOptions engine, TimeProvider time, ILogger<ServerAnswerCache> logger) : IAsyncDisposable
{
    private AnswerCache? _cache;

    /// <summary>Where the cache is kept: the configured file, or beside the embedded store's (<c>STATE.answers.db</c>).</summary>
    public static string? PathOf(ServerCacheOptions cache, ShepherdEngineOptions engine) =>
        cache.Path ?? (engine.Store is { } store ? System.IO.Path.ChangeExtension(System.IO.Path.GetFullPath(store.Path), ".answers.db") : null);

    /// <summary>The cache, opened on the first call; null when the server keeps none or it cannot be opened.</summary>
    public async Task<AnswerCache?> OpenAsync(CancellationToken cancellationToken)
    {
        if (_cache is not null || settings.AnswerCache is not { } wanted || PathOf(wanted, engine) is not { } where)
        {
            return _cache;
        }

        try
        {
            _cache = await AnswerCache.OpenAsync(where, wanted.Limits.MaxBytes, wanted.Limits.MaxAge, time, cancellationToken);
            LogOpened(where);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Data.Common.DbException)
        {
            LogUnusable(ex.Message);
        }

        return _cache;
    }

    public async ValueTask DisposeAsync()
    {
        if (_cache is { } cache)
        {
            await cache.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Answer cache: {Where}")]
    private partial void LogOpened(string where);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The answer cache cannot be used ({Reason}); every request is sent. The engine's next start tries again.")]
    private partial void LogUnusable(string reason);
}
