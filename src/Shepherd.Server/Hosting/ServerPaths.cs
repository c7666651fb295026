namespace Shepherd.Server.Hosting;

/// <summary>
/// Where the server keeps temporary files: request bodies being read and result files being
/// written, next to the store so they share its disk. Left-overs of a crash are removed on start.
/// </summary>
internal sealed class ServerPaths
{
    public ServerPaths(string storePath)
    {
        SpoolFolder = Path.GetFullPath(storePath) + ".spool";
        if (Directory.Exists(SpoolFolder))
        {
            Directory.Delete(SpoolFolder, recursive: true);
        }

        Directory.CreateDirectory(SpoolFolder);
    }

    public string SpoolFolder { get; }

    public string SpoolFile(string name) => Path.Combine(SpoolFolder, name);
}
