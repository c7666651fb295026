namespace Shepherd.Cli.Running;

/// <summary>Paths as messages show them: relative to the working folder when inside it, whole otherwise.</summary>
internal static class ShownPath
{
    public static string Of(string path)
    {
        var full = Path.GetFullPath(path);
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, full);
        return relative == "." || relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? full : relative;
    }
}
